"""The tool loop alone: the model call and the tools are injected functions (no HTTP, no MCP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.agents.definitions import AgentDefinition
from switchboard.agents.runner import REPEAT_LIMIT, ToolLoop, build_tools, collect
from switchboard.agents.tools import McpTool, ToolOutcome
from tests.fakes.agent_upstream import USAGE, decide

TOOLS = [McpTool("calc", "add", "Add", {"type": "object", "properties": {"a": {}, "b": {}}}),
         McpTool("calc", "fail", "Fails"), McpTool("text", "echo", "Echo")]


class Harness:
    """A scripted model (the fake upstream's decision logic, streamed in fragments) and fake tools."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.tool_runs: list[tuple[str, dict[str, Any]]] = []
        self.tool_delay = 0.0
        self.started = asyncio.Event()

    async def model(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.bodies.append(json.loads(json.dumps(body)))
        text, calls = decide(body["messages"])

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}

        yield chunk({"role": "assistant", "content": ""})
        for word in text.split(" ") if text else ():
            yield chunk({"content": word + " "})
        for i, c in enumerate(calls):
            yield chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                         "function": {"name": c["name"], "arguments": c["arguments"][:3]}}]})
        for i, c in enumerate(calls):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": c["arguments"][3:]}}]})
        yield chunk({}, "tool_calls" if calls else "stop")
        yield {"id": "up", "choices": [], "usage": USAGE}

    async def tool(self, tool: McpTool, args: dict[str, Any]) -> ToolOutcome:
        self.tool_runs.append((f"{tool.server}.{tool.name}", args))
        self.started.set()
        if self.tool_delay:
            await asyncio.sleep(self.tool_delay)
        if tool.name == "add":
            return ToolOutcome(str(args["a"] + args["b"]))
        if tool.name == "fail":
            raise RuntimeError("disk on fire")
        return ToolOutcome(f"echo {args}")

    def loop(self, script: dict[str, Any] | str, max_turns: int = 8, mcp_tools: list[McpTool] | None = None,
             **body: Any) -> ToolLoop:
        agent = AgentDefinition(name="helper", model="m", system_prompt="You help.", max_turns=max_turns,
                                defaults={"temperature": 0.1, "max_tokens": 100})
        content = script if isinstance(script, str) else json.dumps(script)
        full = {"model": "helper", "messages": [{"role": "user", "content": content}], **body}
        return ToolLoop(agent, TOOLS if mcp_tools is None else mcp_tools, full, self.model, self.tool, "chatcmpl-x", 1)


async def run(loop: ToolLoop) -> list[dict[str, Any]]:
    return [c async for c in loop.run()]


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def reasoning(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])


def finish(chunks: list[dict[str, Any]]) -> str | None:
    return [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]][-1]


async def test_plain_answer_prepends_system_prompt_and_merges_params() -> None:
    h = Harness()
    chunks = await run(h.loop("hi", temperature=0.7, messages=[{"role": "system", "content": "client rules"},
                                                              {"role": "user", "content": "hi"}]))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content(chunks) == "Plain answer. "
    assert finish(chunks) == "stop"
    body = h.bodies[0]
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user"]
    assert body["messages"][0]["content"] == "You help."
    assert body["messages"][1]["content"] == "client rules"
    assert body["model"] == "m"
    assert body["temperature"] == 0.7  # the client's value wins
    assert body["max_tokens"] == 100  # the agent's default stays
    assert {t["function"]["name"] for t in body["tools"]} == {"add", "fail", "echo"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 15


async def test_single_tool_call_round_trip() -> None:
    h = Harness()
    chunks = await run(h.loop({"calls": [{"name": "add", "arguments": {"a": 2, "b": 40}}]}))
    assert h.tool_runs == [("calc.add", {"a": 2, "b": 40})]
    assert content(chunks) == "Tool said: 42 "
    assert "Calling calc.add" in reasoning(chunks) and "-> calc.add: 2 chars" in reasoning(chunks)
    second = h.bodies[1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["arguments"] == \
        '{"a": 2, "b": 40}'
    assert second[-1] == {"role": "tool", "tool_call_id": "call_0_0", "content": "42"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    # tool activity never leaks into content
    assert all("Calling" not in (c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])


async def test_parallel_calls_run_concurrently_and_every_id_is_answered() -> None:
    h = Harness()
    h.tool_delay = 0.05
    calls = [{"name": "add", "arguments": {"a": 1, "b": 1}}, {"name": "echo", "arguments": {"text": "x"}},
             {"name": "nope", "arguments": {}}]
    loop = h.loop({"calls": calls})
    task = asyncio.ensure_future(run(loop))
    await h.started.wait()
    await asyncio.sleep(0)  # let every tool task start
    assert len(h.tool_runs) == 2  # both MCP calls are in flight at the same time
    chunks = await task
    tool_msgs = [m for m in h.bodies[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["call_0_0", "call_0_1", "call_0_2"]
    assert tool_msgs[2]["content"].startswith("Error: unknown tool `nope`")
    assert content(chunks).startswith("Tool said: 2 | echo")


async def test_tool_error_goes_back_to_the_model() -> None:
    h = Harness()
    chunks = await run(h.loop({"calls": [{"name": "fail", "arguments": {}}]}))
    assert content(chunks) == "Tool said: Error: RuntimeError: disk on fire "
    assert "-> calc.fail failed: RuntimeError: disk on fire" in reasoning(chunks)


async def test_client_tool_call_is_returned_to_the_client() -> None:
    h = Harness()
    client_tool = {"type": "function", "function": {"name": "get_location", "parameters": {"type": "object"}}}
    chunks = await run(h.loop({"calls": [{"name": "get_location", "arguments": {"precise": True}},
                                         {"name": "add", "arguments": {"a": 1, "b": 2}}]},
                              tools=[client_tool]))
    assert h.tool_runs == []  # MCP calls of that turn are not run
    frags = [f for c in chunks if c["choices"] for f in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert frags == [{"index": 0, "id": "call_0_0", "type": "function",
                      "function": {"name": "get_location", "arguments": '{"precise": true}'}}]
    assert finish(chunks) == "tool_calls"
    completion = await collect(_iter(chunks))
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_location"
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


async def _iter(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for c in chunks:
        yield c


async def test_max_turns_stops_with_length() -> None:
    h = Harness()
    chunks = await run(h.loop({"calls": [{"name": "echo", "arguments": {"text": "again"}}], "rounds": "forever",
                               "preamble": "Working"}, max_turns=2))
    assert len(h.bodies) == 2
    assert finish(chunks) == "length"
    # the text of two turns is separated; the note says why the agent stopped
    assert content(chunks) == "Working \n\nWorking \n\n[The agent stopped after 2 model turns without a final answer.]"


async def test_repeated_identical_call_is_refused_then_answer_forced() -> None:
    h = Harness()
    chunks = await run(h.loop({"calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}], "rounds": "forever"},
                              max_turns=10))
    assert len(h.tool_runs) == REPEAT_LIMIT
    last = h.bodies[-1]
    assert last["tool_choice"] == "none"  # the turn after a refused repeat must answer
    assert "already called" in last["messages"][-1]["content"]
    assert finish(chunks) in ("tool_calls", "length", "stop")


async def test_first_model_error_is_raised_before_any_chunk() -> None:
    async def broken(body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise RuntimeError("upstream down")
        yield {}

    h = Harness()
    loop = ToolLoop(AgentDefinition(name="a", model="m", system_prompt="p"), [],
                    {"messages": [{"role": "user", "content": "x"}]}, broken, h.tool, "id", 1)
    with pytest.raises(RuntimeError, match="upstream down"):
        await loop.run().__anext__()


async def test_cancellation_cancels_tool_calls_in_flight() -> None:
    h = Harness()
    h.tool_delay = 30
    loop = h.loop({"calls": [{"name": "add", "arguments": {"a": 1, "b": 1}},
                             {"name": "echo", "arguments": {"text": "x"}}]})
    task = asyncio.ensure_future(run(loop))
    await h.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(h.bodies) == 1


def test_build_tools_namespaces_only_on_clash() -> None:
    tools = [McpTool("a", "read"), McpTool("b", "read"), McpTool("a", "write"), McpTool("a", "get.x")]
    offered, mapping = build_tools(tools, [{"type": "function", "function": {"name": "write"}}])
    names = [t["function"]["name"] for t in offered]
    assert names == ["a__read", "b__read", "a__write", "get_x", "write"]
    assert mapping["a__write"].name == "write" and mapping["get_x"].name == "get.x"


async def test_collect_sums_into_one_completion() -> None:
    h = Harness()
    completion = await collect(h.loop({"calls": [{"name": "add", "arguments": {"a": 2, "b": 2}}]}).run())
    message = completion["choices"][0]["message"]
    assert message["content"] == "Tool said: 4 "
    assert "Calling calc.add" in message["reasoning_content"]
    assert completion["usage"]["total_tokens"] == 30
    assert completion["object"] == "chat.completion" and completion["model"] == "helper"
