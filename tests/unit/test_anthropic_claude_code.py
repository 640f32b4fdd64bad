"""What Claude Code sends to `/v1/messages` (issue 18), translated for the hub: system turns inside
`messages`, deferred tools, the billing-attribution system block, effort / thinking, count_tokens for
models no upstream can count, the stream's first input_tokens, and what the access log keeps for
rejected and cancelled requests. Translators directly; the headend through the in-process app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.config import parse_config
from switchboard.errors import GatewayError
from switchboard.headends.anthropic_request import to_hub_body
from switchboard.headends.anthropic_response import StreamEncoder
from switchboard.headends.token_estimate import MEDIA_TOKENS, estimate_input_tokens
from switchboard.providers.anthropic_convert import to_anthropic_request
from tests.fakes.scripted_provider import InProcessGateway, Reply, chunk

BASE: dict[str, Any] = {"model": "m", "max_tokens": 100}
BILLING = {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.0b8; cc_entrypoint=sdk-cli;"}
KEY = "sk-claude-code"
AUTH = {"x-api-key": KEY}
CONFIG = f"""
auth: {{master_key: {KEY}}}
providers:
  fake: {{type: openai, base_url: "http://127.0.0.1:9/v1", keys: [sk-upstream-secret], retries: {{max: 0}}}}
models:
  m: fake/up-model
"""


def hub(**fields: Any) -> dict[str, Any]:
    return to_hub_body({**BASE, **fields})


def test_system_turns_inside_messages_stay_in_place() -> None:
    body = hub(system=[BILLING, {"type": "text", "text": "You are an agent."}], messages=[
        {"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": "Say hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment", "cache_control": {"type": "x"}}]},
        {"role": "assistant", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "again"},
    ])
    assert body["messages"] == [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "<reminder>\nSay hi"},
        {"role": "system", "content": "# Environment"},
        {"role": "assistant", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "again"},
    ]


def test_system_turns_reach_an_anthropic_upstream_as_its_system_blocks() -> None:
    body = hub(system="Top.", messages=[{"role": "user", "content": "hi"},
                                        {"role": "system", "content": "Env."}])
    config = parse_config("providers: {c: {type: anthropic, keys: [k]}}\nmodels: {m: c/claude}").providers["c"]
    sent = to_anthropic_request(body, "claude", config)
    assert sent["system"] == [{"type": "text", "text": "Top."}, {"type": "text", "text": "Env."}]
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


def test_other_roles_are_still_refused() -> None:
    with pytest.raises(GatewayError, match=r"messages\.0\.role: Input should be 'user', 'assistant' or 'system'"):
        hub(messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(GatewayError, match=r"messages\.1\.content\.0\.type: system blocks must be of type 'text'"):
        hub(messages=[{"role": "user", "content": "x"},
                      {"role": "system", "content": [{"type": "image", "source": {}}]}])


def test_billing_line_is_dropped_and_an_all_billing_system_leaves_none() -> None:
    assert hub(system=[BILLING], messages=[{"role": "user", "content": "hi"}])["messages"] == [
        {"role": "user", "content": "hi"}]
    assert hub(system=BILLING["text"], messages=[{"role": "user", "content": "hi"}])["messages"][0]["role"] == "user"
    assert "billing" not in orjson.dumps(hub(system=[BILLING, {"type": "text", "text": "S"}],
                                             messages=[{"role": "user", "content": "hi"}])).decode()


WRITE = {"name": "Write", "description": "Write a file", "input_schema": {"type": "object", "properties": {}}}
DEFERRED = {"name": "DeferredToolPlaceholder", "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True}


def test_deferred_tools_are_not_offered_until_a_tool_search_names_them() -> None:
    body = hub(tools=[WRITE, DEFERRED], messages=[{"role": "user", "content": "hi"}])
    assert [t["function"]["name"] for t in body["tools"]] == ["Write"]
    assert "defer_loading" not in orjson.dumps(body).decode()
    found = hub(tools=[WRITE, DEFERRED], messages=[
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "tool_reference", "tool_name": "DeferredToolPlaceholder"}]}]}])
    assert [t["function"]["name"] for t in found["tools"]] == ["Write", "DeferredToolPlaceholder"]


def test_only_deferred_tools_means_no_tools_and_no_tool_choice() -> None:
    body = hub(tools=[DEFERRED], tool_choice={"type": "auto"}, messages=[{"role": "user", "content": "hi"}])
    assert "tools" not in body and "tool_choice" not in body


def test_effort_and_thinking_become_reasoning_effort() -> None:
    hi = [{"role": "user", "content": "hi"}]
    assert hub(messages=hi, output_config={"effort": "medium"},
               thinking={"type": "adaptive", "display": "omitted"})["reasoning_effort"] == "medium"
    assert hub(messages=hi, output_config={"effort": "max"})["reasoning_effort"] == "high"
    assert hub(messages=hi, thinking={"type": "enabled", "budget_tokens": 2048})["reasoning_effort"] == "low"
    assert hub(messages=hi, thinking={"type": "enabled", "budget_tokens": 8000})["reasoning_effort"] == "medium"
    assert hub(messages=hi, thinking={"type": "enabled", "budget_tokens": 32000})["reasoning_effort"] == "high"
    for extra in ({"thinking": {"type": "adaptive"}}, {"thinking": {"type": "disabled"}},
                  {"output_config": {"effort": "some-future-level"}}, {}):
        body = hub(messages=hi, **extra)
        assert "reasoning_effort" not in body and "thinking" not in body and "output_config" not in body


def test_estimate_counts_text_tools_and_media() -> None:
    body = {"messages": [{"role": "user", "content": "a" * 400},
                         {"role": "assistant", "content": None,
                          "tool_calls": [{"function": {"name": "Write", "arguments": "b" * 96}}]},
                         {"role": "user", "content": [
                             {"type": "image_url", "image_url": {"url": "data:" + "x" * 9999}}]}]}
    assert estimate_input_tokens(body) == -(-(400 + 5 + 96) // 4) + 3 * 3 + MEDIA_TOKENS
    with_tools = {**body, "tools": [{"type": "function", "function": {"name": "t"}}]}
    assert estimate_input_tokens(with_tools) > estimate_input_tokens(body)


def _start_usage(first: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    encoder = StreamEncoder("m", [], lambda: 1234)
    events = list(encoder.feed(first))
    final = list(encoder.end())
    start = next(data for name, data in events if name == "message_start")
    delta = next(data for name, data in final if name == "message_delta")
    return start["message"]["usage"], delta["usage"]


def test_first_stream_event_has_the_estimate_then_the_real_count() -> None:
    encoder = StreamEncoder("m", [], lambda: 1234)
    start = next(d for n, d in encoder.feed(chunk("Hi")) if n == "message_start")
    assert start["message"]["usage"]["input_tokens"] == 1234
    list(encoder.feed(chunk(usage={"prompt_tokens": 900, "completion_tokens": 2, "total_tokens": 902})))
    delta = next(d for n, d in encoder.end() if n == "message_delta")
    assert (delta["usage"]["input_tokens"], delta["usage"]["output_tokens"]) == (900, 2)


def test_first_stream_event_uses_an_early_upstream_count() -> None:
    start, delta = _start_usage(chunk("Hi", usage={"prompt_tokens": 77, "completion_tokens": 0, "total_tokens": 77}))
    assert start["input_tokens"] == 77 and delta["input_tokens"] == 77
    start, delta = _start_usage(chunk("Hi"))  # no usage ever: the estimate stands
    assert start["input_tokens"] == delta["input_tokens"] == 1234


async def test_count_tokens_for_an_openai_model_is_an_estimate(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        resp = await gw.request("POST", "/v1/messages/count_tokens", {
            "model": "m", "system": [BILLING, {"type": "text", "text": "s" * 40}],
            "messages": [{"role": "user", "content": "u" * 80}]}, AUTH)
    assert resp.status == 200, resp.body
    assert resp.json() == {"input_tokens": 10 + 20 + 3 * 2}
    assert resp.headers["x-switchboard-token-count"] == "estimate"


async def test_claude_code_headers_and_fields_are_not_a_400(tmp_path: Path) -> None:
    beta = ("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
            "advanced-tool-use-2025-11-20,effort-2025-11-24,some-future-beta-2099-01-01")
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(batches=[[chunk("Hi", role="assistant")], [chunk(finish="stop")]]))
        resp = await gw.request("POST", "/v1/messages", {
            **BASE, "model": "m", "stream": True, "system": [BILLING],
            "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "Env."}],
            "tools": [WRITE, DEFERRED], "thinking": {"type": "adaptive", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "medium"}, "metadata": {"user_id": "{\"device_id\":\"d\"}"}},
            {**AUTH, "anthropic-beta": beta, "anthropic-version": "2023-06-01"})
        sent = gw.fakes["fake"].calls[-1].body
    assert resp.status == 200, resp.body
    assert sent["messages"] == [{"role": "user", "content": "hi"}, {"role": "system", "content": "Env."}]
    assert [t["function"]["name"] for t in sent["tools"]] == ["Write"]
    assert sent["reasoning_effort"] == "medium"
    assert not {"thinking", "context_management", "output_config"} & set(sent)
    start = next(d for d in resp.sse_data() if isinstance(d, dict) and d.get("type") == "message_start")
    assert start["message"]["usage"]["input_tokens"] > 0


async def test_rejected_request_keeps_model_key_and_stream_in_the_record(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        resp = await gw.request("POST", "/v1/messages", {"model": "m", "stream": True, "messages": []}, AUTH)
    assert resp.status == 400
    record = gw.records[-1]
    assert (record.model, record.stream, record.key_id, record.status) == ("m", True, "master", 400)


async def test_cancelled_request_keeps_the_provider_and_attempts_reached(tmp_path: Path) -> None:
    async with InProcessGateway(CONFIG, tmp_path) as gw:
        gw.fakes["fake"].script(Reply(batches=[[chunk("never")]], hold=asyncio.Event()))
        task = asyncio.create_task(gw.request("POST", "/v1/messages", {
            **BASE, "stream": True, "messages": [{"role": "user", "content": "hi"}]}, AUTH))
        for _ in range(100):
            await asyncio.sleep(0)
            if gw.fakes["fake"].calls:
                break
        assert gw.fakes["fake"].calls, "the upstream call never started"
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        gw.gateway.flush_finished()
    record = gw.records[-1]
    assert (record.status, record.provider, record.upstream_model, record.attempts) == (499, "fake", "up-model", 1)
