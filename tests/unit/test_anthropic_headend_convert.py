"""Unit tests of the Anthropic headend's translators: request -> hub, hub -> message, chunks -> events."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.errors import GatewayError
from switchboard.headends.anthropic_request import parse_messages_request, to_hub_body
from switchboard.headends.anthropic_response import StreamEncoder, error_body, to_anthropic_message

BASE: dict[str, Any] = {"model": "m", "max_tokens": 100}


def hub(**fields: Any) -> dict[str, Any]:
    return to_hub_body({**BASE, **fields})


def test_system_blocks_and_same_role_turns() -> None:
    body = hub(system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {}}],
               messages=[{"role": "user", "content": "one"}, {"role": "user", "content": [
                   {"type": "text", "text": "two"}, {"type": "text", "text": "three"}]}])
    assert body["messages"] == [{"role": "system", "content": "A\nB"}, {"role": "user", "content": "one"},
                                {"role": "user", "content": "two\nthree"}]
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body


def test_tool_results_come_first_and_images_follow_in_a_user_turn() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"}}
    body = hub(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "t1", "name": "shot", "input": {"x": 1}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "here"},
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "done"}, img]},
        ]},
    ])
    assert body["messages"][1] == {"role": "assistant", "content": "Calling.", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "shot", "arguments": '{"x":1}'}}]}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "done"}
    assert body["messages"][3] == {"role": "user", "content": [
        {"type": "text", "text": "here"},
        {"type": "text", "text": "Images returned by tool call t1:"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAA"}}]}


def test_tool_result_error_flag_and_empty_content() -> None:
    body = hub(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "a", "is_error": True},
        {"type": "tool_result", "tool_use_id": "b", "content": "ok"}]}])
    assert body["messages"] == [{"role": "tool", "tool_call_id": "a", "content": "Error"},
                                {"role": "tool", "tool_call_id": "b", "content": "ok"}]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
])
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    body = hub(messages=[{"role": "user", "content": "x"}], tool_choice=choice,
               tools=[{"name": "f", "input_schema": {"type": "object"}}])
    assert body["tool_choice"] == expected
    assert body["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert "parallel_tool_calls" not in body


def test_sampling_stop_user_and_output_format() -> None:
    body = hub(messages=[{"role": "user", "content": "x"}], temperature=0, top_k=5, stop_sequences=["##"],
               metadata={"user_id": "u1"}, thinking={"type": "enabled", "budget_tokens": 1024},
               output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}})
    assert (body["temperature"], body["top_k"], body["stop"], body["user"]) == (0, 5, ["##"], "u1")
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": {"type": "object"}}}
    assert "thinking" not in body and "metadata" not in body


def test_stream_request_always_asks_for_usage() -> None:
    request = parse_messages_request({**BASE, "messages": [{"role": "user", "content": "x"}], "stream": True})
    assert request.stream and request.include_usage
    assert request.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": []}]}, "messages.0.content"),
    ({"messages": [{"role": "assistant", "content": ""}, {"role": "user", "content": "x"}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "1", "name": "f", "input": {}}]}]},
     "messages.0.content.0.type"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "1", "name": "f"}]}]},
     "messages.0.content.0.input"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}, "messages.0.content.0.tool_use_id"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages.0.content.0.source.type"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
    ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ({"system": [{"type": "image"}]}, "system.0.type"),
    ({"stop_sequences": [1]}, "stop_sequences"),
])
def test_invalid_requests_name_the_field(fields: dict[str, Any], param: str) -> None:
    raw = {**BASE, "messages": [{"role": "user", "content": "x"}], **fields}
    if fields.get("max_tokens", 1) is None:
        del raw["max_tokens"]
    with pytest.raises(GatewayError) as info:
        to_hub_body(raw)
    assert info.value.status == 400 and info.value.param == param


def test_final_assistant_prefill_may_be_empty() -> None:
    body = hub(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}])
    assert body["messages"] == [{"role": "user", "content": "x"}]


def test_count_tokens_body_needs_no_max_tokens() -> None:
    assert to_hub_body({"model": "m", "messages": [{"role": "user", "content": "x"}]}, require_max_tokens=False)


def completion(message: dict[str, Any], finish: str, usage: dict[str, Any] | None = None,
               **choice: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}


@pytest.mark.parametrize(("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens"),
                                                ("content_filter", "refusal"), (None, "end_turn")])
def test_stop_reasons(finish: str, reason: str) -> None:
    out = to_anthropic_message(completion({"role": "assistant", "content": "hi"}, finish), "m", [])
    assert out["stop_reason"] == reason and out["stop_sequence"] is None


def test_message_with_reasoning_tool_calls_and_cache_usage() -> None:
    message = {"role": "assistant", "content": "Let me check.", "reasoning_content": "think",
               "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                              {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "oops"}}]}
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}
    out = to_anthropic_message(completion(message, "tool_calls", usage), "pub", [])
    assert out["model"] == "pub" and out["id"].startswith("msg_")
    assert out["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "c2", "name": "g", "input": {"_raw_arguments": "oops"}},
    ]
    assert out["stop_reason"] == "tool_use"
    assert out["usage"] == {"input_tokens": 40, "output_tokens": 7, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 60}


def test_matched_stop_sequence_when_the_upstream_says_which() -> None:
    out = to_anthropic_message(completion({"role": "assistant", "content": "x"}, "stop", stop_reason="##"),
                               "m", ["##"])
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "##")


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "choices": choices, "usage": usage}


def call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    frag: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        frag.update(id=call_id, type="function")
        frag["function"]["name"] = name
    return chunk({"tool_calls": [frag]})


def run(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    encoder = StreamEncoder("m", [])
    events = [e for c in chunks for e in encoder.feed(c)]
    return events + list(encoder.end())


def test_stream_thinking_text_then_interleaved_tool_calls() -> None:
    events = run([
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "hm"}),
        chunk({"content": "Hi"}),
        call(0, "", "a", "f"),
        call(0, '{"x":'),
        call(1, "{", "b", "g"),
        call(0, "1}"),
        call(1, "}"),
        chunk({}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 6}),
    ])
    names = [n for n, _ in events]
    assert names == ["message_start", "ping",
                     "content_block_start", "content_block_delta", "content_block_stop",  # thinking
                     "content_block_start", "content_block_delta", "content_block_stop",  # text
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",  # held call, whole
                     "message_delta", "message_stop"]
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2, 3]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text", "tool_use", "tool_use"]
    assert starts[3]["content_block"] == {"type": "tool_use", "id": "b", "name": "g", "input": {}}
    json_parts = [(d["index"], d["delta"]["partial_json"]) for n, d in events
                  if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert json_parts == [(2, '{"x":'), (2, "1}"), (3, "{}")]
    assert {d["index"] for _, d in events[2:5]} == {0}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 6 and delta["usage"]["input_tokens"] == 9


def test_stream_length_and_empty_answer() -> None:
    events = run([chunk({"role": "assistant", "content": ""}), chunk({}, "length")])
    assert [n for n, _ in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[0][1]["message"]["usage"]["input_tokens"] == 0


@pytest.mark.parametrize(("status", "etype"), [(400, "invalid_request_error"), (401, "authentication_error"),
                                               (403, "permission_error"), (404, "not_found_error"),
                                               (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
                                               (503, "overloaded_error"), (529, "overloaded_error")])
def test_error_body(status: int, etype: str) -> None:
    assert error_body(GatewayError(status, "boom")) == {"type": "error", "error": {"type": etype, "message": "boom"}}
