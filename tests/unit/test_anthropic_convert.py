"""Unit tests of the hub <-> Anthropic Messages translators (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from switchboard.config import ProviderConfig
from switchboard.errors import GatewayError
from switchboard.providers.anthropic_convert import (
    JSON_TOOL,
    AnthropicStreamConverter,
    anthropic_error,
    finish_reason,
    from_anthropic_response,
    to_anthropic_request,
)
from tests.fakes.anthropic_upstream import Invalid, validate_request

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def cfg(**kw: Any) -> ProviderConfig:
    return ProviderConfig(name="claude", type="anthropic", base_url="https://api.anthropic.com", **kw)


def convert(body: dict[str, Any], model: str = "claude-x", **kw: Any) -> dict[str, Any]:
    out = to_anthropic_request(body, model, cfg(**kw))
    validate_request(HEADERS, out, None)  # everything we send must pass the strict fake's checks
    return out


def test_system_and_developer_become_top_level_system() -> None:
    out = convert({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "hi"},
    ]})
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert out["max_tokens"] == 4096


def test_consecutive_same_role_messages_are_merged() -> None:
    out = convert({"messages": [
        {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
        {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "three"},
    ]})
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]


def test_history_starting_with_assistant_or_only_system_gets_a_user_turn_first() -> None:
    out = convert({"messages": [{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "yo"}]})
    assert out["messages"][0] == {"role": "user", "content": "."}
    out = convert({"messages": [{"role": "system", "content": "Say hi"}]})
    assert out["messages"] == [{"role": "user", "content": "."}]


def test_images_data_url_and_https_url() -> None:
    out = convert({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}]})
    blocks = out["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize("url", ["data:image/bmp;base64,AAAA", "data:image/png,notbase64", "ftp://x/y.png"])
def test_bad_image_urls_are_400_naming_the_part(url: str) -> None:
    with pytest.raises(GatewayError) as info:
        convert({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    assert info.value.status == 400
    assert info.value.param == "messages[0].content[0].image_url.url"


def test_pdf_file_parts_become_documents_and_other_files_are_400() -> None:
    out = convert({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}]}]})
    assert out["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}]
    with pytest.raises(GatewayError) as info:
        convert({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}}]}]})
    assert info.value.code == "unsupported_content" and info.value.param == "messages[0].content[0]"


def test_tools_tool_choice_and_parallel() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object", "properties": {"city": {}}}}},
             {"type": "function", "function": {"name": "no_params"}}]
    out = convert({"messages": [{"role": "user", "content": "hi"}], "tools": tools})
    assert out["tools"] == [
        {"name": "get_weather", "description": "Weather",
         "input_schema": {"type": "object", "properties": {"city": {}}}},
        {"name": "no_params", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out
    for choice, expected in [("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"}),
                             ({"type": "function", "function": {"name": "get_weather"}},
                              {"type": "tool", "name": "get_weather"})]:
        out = convert({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice})
        assert out["tool_choice"] == expected
    out = convert({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "parallel_tool_calls": False})
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    out = convert({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "parallel_tool_calls": False,
                   "tool_choice": "required"})
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_round_trip_history() -> None:
    out = convert({"messages": [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "thanks"},
    ]})
    assistant, results = out["messages"][1], out["messages"][2]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ]
    assert results["role"] == "user"
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        {"type": "text", "text": "thanks"},
    ]


def test_invalid_tool_arguments_are_a_400() -> None:
    with pytest.raises(GatewayError) as info:
        convert({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]})
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_scalar_parameters() -> None:
    out = convert({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50, "max_tokens": 9,
                   "stop": "END", "temperature": 1.7, "top_p": 0.5, "user": "u-1",
                   # harmless OpenAI-only and client fields must not reach Anthropic
                   "stream_options": {"include_usage": True}, "store": True, "metadata": {"a": "b"},
                   "service_tier": "auto", "call": {"id": 1}, "prompt_cache_key": "k", "n": 1,
                   "presence_penalty": 0, "top_k": 5})
    assert out == {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
                   "stop_sequences": ["END"], "temperature": 1.0, "top_p": 0.5, "metadata": {"user_id": "u-1"},
                   "top_k": 5}


def test_max_tokens_defaults() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert convert(body, "big", max_tokens_by_model={"big": 64000})["max_tokens"] == 64000
    assert convert(body, "other", default_max_tokens=1000)["max_tokens"] == 1000
    assert convert({**body, "max_tokens": 7})["max_tokens"] == 7


def test_object_user_is_not_forwarded_and_extras_can_be_disabled() -> None:
    out = convert({"messages": [{"role": "user", "content": "hi"}], "user": {"id": 1}, "top_k": 3},
                  forward_unknown_params=False)
    assert "metadata" not in out and "top_k" not in out


@pytest.mark.parametrize(("name", "value"), [("n", 2), ("logprobs", True), ("top_logprobs", 3),
                                              ("presence_penalty", 0.5), ("frequency_penalty", 1), ("seed", 1),
                                              ("logit_bias", {"1": 2})])
def test_unsupported_parameters_400_or_dropped(name: str, value: Any) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], name: value}
    with pytest.raises(GatewayError) as info:
        convert(body)
    assert info.value.status == 400 and info.value.param == name and name in info.value.message
    assert name not in convert(body, drop_unsupported=True)


def test_response_format_json_schema_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    body = {"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}
    out = convert(body)
    assert out["tools"] == [{"name": JSON_TOOL, "description": "Give the final answer as JSON (reply).",
                             "input_schema": schema}]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    tools = [{"type": "function", "function": {"name": "f"}}]
    out = convert({**body, "tools": tools})
    assert [t["name"] for t in out["tools"]] == ["f", JSON_TOOL] and out["tool_choice"] == {"type": "any"}
    resp = {"id": "msg_1", "model": "m", "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2},
            "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"answer": "yes"}}]}
    message = from_anthropic_response(resp, json_tool=True)["choices"][0]
    assert json.loads(message["message"]["content"]) == {"answer": "yes"}
    assert message["finish_reason"] == "stop" and "tool_calls" not in message["message"]


def test_reasoning_effort_enables_thinking() -> None:
    out = convert({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low", "max_tokens": 100,
                   "temperature": 0.3})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert out["max_tokens"] == 1124 and "temperature" not in out


def test_response_text_tools_thinking_and_usage() -> None:
    resp = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 20}}
    out = from_anthropic_response(resp)
    choice = out["choices"][0]
    assert out["object"] == "chat.completion" and out["id"] == "msg_1"
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["reasoning_content"] == "hmm"
    assert choice["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert out["usage"] == {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}}


@pytest.mark.parametrize(("reason", "expected"), [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                  ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                                  ("refusal", "content_filter"), ("pause_turn", "stop"),
                                                  ("model_context_window_exceeded", "length"), (None, "stop")])
def test_finish_reasons(reason: str | None, expected: str) -> None:
    assert finish_reason(reason) == expected


@pytest.mark.parametrize(("status", "etype", "want_status", "want_type"), [
    (400, "invalid_request_error", 400, "invalid_request_error"),
    (401, "authentication_error", 401, "authentication_error"),
    (403, "permission_error", 403, "permission_error"),
    (404, "not_found_error", 404, "not_found_error"),
    (413, "request_too_large", 413, "invalid_request_error"),
    (429, "rate_limit_error", 429, "rate_limit_error"),
    (500, "api_error", 500, "api_error"),
    (529, "overloaded_error", 503, "overloaded_error"),
    (None, "overloaded_error", 503, "overloaded_error"),
    (None, "rate_limit_error", 429, "rate_limit_error"),
])
def test_error_mapping(status: int | None, etype: str, want_status: int, want_type: str) -> None:
    body = {"type": "error", "error": {"type": etype, "message": "boom sk-ant-secret123"}}
    err = anthropic_error(body, "claude", status, ("sk-ant-secret123",), {"retry-after": "7", "x-other": "1"})
    assert (err.status, err.type) == (want_status, want_type)
    assert err.message == "boom [REDACTED]"
    assert err.headers == {"retry-after": "7"}
    assert err.retryable == (want_status in (429, 503, 500))


def events(*pairs: tuple[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(name, json.dumps(data)) for name, data in pairs]


START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_s", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1,
                                                          "cache_read_input_tokens": 4}}})


def run(conv: AnthropicStreamConverter, stream: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], bool]:
    chunks: list[dict[str, Any]] = []
    for name, data in stream:
        try:
            out = conv.convert(name, data)
        except StopAsyncIteration:
            return chunks, True
        chunks.extend(out if isinstance(out, list) else [out] if out else [])
    return chunks, False


def test_stream_text_tools_thinking_and_usage() -> None:
    stream = events(
        START, ("ping", {"type": "ping"}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "sig"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}),
        ("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {
            "type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 3,
                                 "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    )
    chunks, finished = run(AnthropicStreamConverter("claude"), stream)
    assert finished
    assert {c["id"] for c in chunks} == {"msg_s"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"reasoning_content": "hmm"}
    assert deltas[2] == {"content": "Hi"}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert calls[2] == {"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "g", "arguments": ""}}
    assert [c["index"] for c in calls] == [0, 0, 1, 1, 0]
    assert all("id" not in c for c in (calls[1], calls[3], calls[4]))
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23,
                                   "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0}}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_stream_error_event_raises_mapped_error() -> None:
    conv = AnthropicStreamConverter("claude")
    conv.convert("message_start", events(START)[0][1])
    with pytest.raises(GatewayError) as info:
        conv.convert("error", json.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                                     "message": "Overloaded"}}))
    assert info.value.status == 503 and "Overloaded" in info.value.message


def test_stream_json_tool_becomes_content() -> None:
    stream = events(
        START,
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_j", "name": JSON_TOOL, "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 3}}),
    )
    chunks, finished = run(AnthropicStreamConverter("claude", json_tool=True), stream)
    assert not finished
    assert [c["choices"][0]["delta"] for c in chunks[1:-2]] == [{"content": '{"a": 1}'}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_fake_rejects_what_the_real_api_rejects() -> None:
    def check(body: dict[str, Any], headers: dict[str, str] = HEADERS) -> str:
        with pytest.raises(Invalid) as info:
            validate_request(headers, body, None)
        return info.value.message

    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert "max_tokens" in check({k: v for k, v in base.items() if k != "max_tokens"})
    assert "Extra inputs" in check({**base, "n": 2})
    assert "x-api-key" in check(base, {"anthropic-version": "2023-06-01"})
    assert "anthropic-version" in check(base, {"x-api-key": "k"})
    assert "alternate" in check({**base, "messages": [{"role": "user", "content": "a"}] * 2})
    assert "role" in check({**base, "messages": [{"role": "system", "content": "a"}]})
    assert "tool_result" in check({**base, "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r"}]}]})
    assert "tool_use" in check({**base, "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": "no result"}]})
