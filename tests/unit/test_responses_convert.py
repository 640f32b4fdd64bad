"""The Responses bridge's translators, without I/O: request items -> chat messages, chat answers and
chunk streams -> Responses objects and events, each validated against the official OpenAPI schemas."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from switchboard.errors import GatewayError
from switchboard.headends.responses_request import parse_responses_request, to_hub
from switchboard.headends.responses_response import ResponsesStreamEncoder, response_from_chat
from tests.fakes.scripted_provider import chunk
from tests.spec import validate_against_spec, validate_response_event

TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"type": "custom", "name": "apply_patch", "description": "Apply a patch."},
    {"type": "namespace", "name": "crm", "description": "CRM tools.", "tools": [
        {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]},
    {"type": "web_search"},
]


def _parse(**body: Any) -> Any:
    return parse_responses_request({"model": "m", **body})


def test_input_items_become_chat_messages_with_tool_turns_merged() -> None:
    req = _parse(instructions="Be brief.", tools=TOOLS, input=[
        {"role": "developer", "content": "dev note"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call", "call_id": "c3", "name": "lookup", "namespace": "crm", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "ok"}]},
        {"type": "function_call_output", "call_id": "c3", "output": {"found": True}},
        {"type": "some_future_item", "x": 1},
    ])
    hub = to_hub(req, [], {})
    messages = hub.body["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "developer", "content": "dev note"}
    assert messages[2]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    assistant = messages[3]
    assert assistant["content"] == "Calling." and [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2", "c3"]
    assert assistant["tool_calls"][1]["function"] == {"name": "apply_patch",
                                                      "arguments": '{"input":"*** Begin Patch"}'}
    assert assistant["tool_calls"][2]["function"]["name"] == "crm__lookup"
    assert [m["role"] for m in messages[4:]] == ["tool", "tool", "tool"]
    assert messages[5]["content"] == "ok" and messages[6]["content"] == '{"found":true}'
    offered = [t["function"]["name"] for t in hub.body["tools"]]
    assert offered == ["get_weather", "apply_patch", "crm__lookup"]  # web_search dropped
    assert hub.body["tools"][1]["function"]["parameters"]["required"] == ["input"]
    assert req.dropped_tools == ["web_search"]


def test_parameters_map_and_unservable_fields_are_named() -> None:
    hub = to_hub(_parse(input="hi", max_output_tokens=50, reasoning={"effort": "low", "summary": "auto"},
                        text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"},
                                         "strict": True}, "verbosity": "low"},
                        temperature=0.2, store=False, metadata={"a": "b"}, stream=True, truncation="auto"), [], {})
    body = hub.body
    assert body["max_tokens"] == 50 and body["reasoning_effort"] == "low" and body["verbosity"] == "low"
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}, "strict": True}}
    assert body["stream_options"] == {"include_usage": True} and "metadata" not in body and "store" not in body
    for field, value in (("background", True), ("conversation", "conv_1"), ("prompt", {"id": "p"})):
        with pytest.raises(GatewayError) as err:
            _parse(input="hi", **{field: value})
        assert err.value.status == 400 and err.value.param == field
    with pytest.raises(GatewayError) as err:
        parse_responses_request({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "reject")
    assert err.value.param == "tools[0]"
    with pytest.raises(GatewayError) as err:
        _parse(input=[{"role": "robot", "content": "x"}]).input_items and to_hub(
            _parse(input=[{"role": "robot", "content": "x"}]), [], {})
    assert err.value.param == "input[0].role"


def _chat_answer(**message: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
                      "prompt_tokens_details": {"cached_tokens": 3},
                      "completion_tokens_details": {"reasoning_tokens": 2}}}


def test_a_chat_answer_becomes_a_valid_response_object() -> None:
    req = _parse(input="hi", tools=TOOLS)
    response = response_from_chat(_chat_answer(
        content="Let me check.", reasoning_content="thinking...",
        tool_calls=[{"id": "c1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                    {"id": "c2", "type": "function", "function": {"name": "apply_patch",
                                                                  "arguments": '{"input":"*** Begin"}'}},
                    {"id": "c3", "type": "function", "function": {"name": "crm__lookup", "arguments": "{}"}}]),
        req, "resp_1", 1)
    validate_against_spec("Response", response)
    kinds = [item["type"] for item in response["output"]]
    assert kinds == ["reasoning", "message", "function_call", "custom_tool_call", "function_call"]
    assert response["output"][3]["input"] == "*** Begin" and response["output"][3]["call_id"] == "c2"
    assert response["output"][4]["name"] == "lookup" and response["output"][4]["namespace"] == "crm"
    assert response["usage"] == {"input_tokens": 9,
                                 "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                                 "output_tokens": 4,
                                 "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 13}
    assert response["status"] == "completed" and response["model"] == "m"


def _events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        name, data = frame.split("\n", 1)
        event = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def test_a_chunk_stream_becomes_the_responses_event_sequence() -> None:
    req = _parse(input="hi", tools=TOOLS, stream=True)
    stored: list[dict[str, Any]] = []

    async def keep(response: dict[str, Any]) -> None:
        stored.append(response)

    encoder = ResponsesStreamEncoder(req, "resp_1", 1, keep)
    frag = {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    custom = {"index": 1, "id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": ""}}
    raw = encoder.encode([chunk(role="assistant"), {**chunk(), "choices": [
        {"index": 0, "delta": {"reasoning_content": "hmm"}, "finish_reason": None}]}])
    raw += encoder.encode([chunk("Hel"), chunk("lo")])
    raw += encoder.encode([chunk(tool_calls=[frag]), chunk(tool_calls=[custom]),
                           chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
                           chunk(tool_calls=[{"index": 1, "function": {"arguments": '{"input":"*** B"}'}}]),
                           chunk(tool_calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}])])
    raw += encoder.encode([chunk(finish="tool_calls"), chunk(usage={"prompt_tokens": 5, "completion_tokens": 3,
                                                                    "total_tokens": 8})])
    raw += asyncio.run(encoder.end())
    events = _events(raw)
    for event in events:
        validate_response_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 4
    assert "response.reasoning_summary_text.delta" in kinds and "response.output_text.done" in kinds
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    assert done[1]["content"][0]["text"] == "Hello"
    assert done[2]["arguments"] == '{"city":"Oslo"}'
    assert done[3] == {"type": "custom_tool_call", "id": done[3]["id"], "call_id": "c2", "name": "apply_patch",
                       "input": "*** B", "status": "completed"}
    final = events[-1]["response"]
    assert stored == [final] and [i["type"] for i in final["output"]] == [
        "reasoning", "message", "function_call", "custom_tool_call"]
    assert final["usage"]["total_tokens"] == 8


def test_a_failed_stream_ends_with_response_failed_and_length_is_incomplete() -> None:
    req = _parse(input="hi", stream=True)
    encoder = ResponsesStreamEncoder(req, "resp_1", 1)
    raw = encoder.encode([chunk(role="assistant"), chunk("partial")])
    raw += encoder.error(GatewayError(502, "Upstream broke.", "api_error", code="upstream_connection_error"))
    events = _events(raw)
    for event in events:
        validate_response_event(event)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert "completed" not in {e["type"] for e in events}
    cut = ResponsesStreamEncoder(req, "resp_2", 1)
    raw = cut.encode([chunk("a")]) + cut.encode([chunk(finish="length")]) + asyncio.run(cut.end())
    last = _events(raw)[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
