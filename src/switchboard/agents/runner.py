"""The agent tool loop: model call -> MCP tool calls -> model call ..., as a stream of OpenAI chunks.

The model call and the tool execution are injected functions, so the loop runs without HTTP or MCP.
`ToolLoop.run()` yields `chat.completion.chunk` dicts (always ending with a usage chunk whose
`choices` is empty; the headend drops it unless the client asked for usage); `collect()` folds them
into one `chat.completion` for non-stream requests.

Behaviour (documented in the README):
- The agent's system prompt comes first; the client's messages (its own system message included)
  follow. Client parameters override the agent's defaults. Tools offered: the agent's MCP tools
  (plain names, or `server__tool` when a name clashes) plus any tools the client sent.
- Content deltas are forwarded as they arrive, in every turn. Text a model writes before calling
  tools in the same turn ("Let me look that up") therefore stays part of the answer; the next
  turn's text is separated from it by a blank line.
- Tool activity goes to `delta.reasoning_content` only ("Calling files.read_file {...}",
  "-> files.read_file: 120 chars"), which Open WebUI shows as a collapsible block and other
  clients ignore. The model's own reasoning deltas are forwarded there too.
- Several tool calls of one turn run in parallel; every `tool_call_id` is answered. Tool errors,
  unknown tool names and invalid arguments go back to the model as the tool's result, prefixed
  with "Error:". The same tool with the same arguments is run at most `REPEAT_LIMIT` times; beyond
  that the call is answered with an error and the next turn is asked to answer without tools.
- If the model calls a tool the client supplied, the loop ends and those calls go to the client in
  standard OpenAI form (`finish_reason: "tool_calls"`); MCP calls of that same turn are not run.
- After `max_turns` model calls without a final answer the loop stops with
  `finish_reason: "length"` and a one-line note in the content.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..hub import Usage, usage_from
from .definitions import AgentDefinition
from .tools import McpTool, ToolOutcome

__all__ = ["REPEAT_LIMIT", "ModelCall", "ToolCall", "ToolLoop", "ToolTrace", "build_tools", "collect"]

# The loop closes each turn's stream (`aclose`) when it stops early, so a model call is an async generator.
ModelCall = Callable[[dict[str, Any]], AsyncGenerator[dict[str, Any], None]]
ToolCall = Callable[[McpTool, dict[str, Any]], Awaitable[ToolOutcome]]


class ToolSpan(Protocol):
    def done(self, outcome: ToolOutcome) -> None: ...


# Traced requests: opens the span of one tool call (tool, call id, arguments); `done` ends it.
ToolTrace = Callable[[McpTool, str, str], ToolSpan]

REPEAT_LIMIT = 2
_ACTIVITY_ARGS_MAX = 200
# The gateway decides these per turn; the client's values would break the loop.
_LOOP_OWNED = frozenset({"model", "messages", "stream", "stream_options", "tools", "n"})
_TOOL_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def _tool_name(raw: str) -> str:
    return _TOOL_NAME_BAD.sub("_", raw)[:64] or "tool"


def build_tools(mcp_tools: list[McpTool], client_tools: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], dict[str, McpTool]]:
    """The `tools` parameter for the model, and exposed name -> MCP tool.

    MCP tools keep their own name unless it clashes with a client tool or a tool of another server;
    then they are offered as `server__tool`. Client tools are offered unchanged.
    """
    client_names = {t["function"]["name"] for t in client_tools
                    if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]}
    counts = Counter(_tool_name(t.name) for t in mcp_tools)
    mapping: dict[str, McpTool] = {}
    offered: list[dict[str, Any]] = []
    for tool in mcp_tools:
        name = _tool_name(tool.name)
        if counts[name] > 1 or name in client_names:
            name = _tool_name(f"{tool.server}__{tool.name}")
        if name in mapping or name in client_names:
            continue  # still clashing after namespacing: offer the first one only
        mapping[name] = tool
        offered.append({"type": "function", "function": {
            "name": name, "description": tool.description, "parameters": tool.input_schema}})
    return offered + list(client_tools), mapping


@dataclass(slots=True)
class _Call:
    id: str
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class _Turn:
    """What one model call produced: text, tool calls (from streamed fragments), finish reason."""

    content: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    finish: str | None = None

    def add_fragment(self, frag: dict[str, Any]) -> None:
        index = frag.get("index", len(self.calls))
        call = self.calls.get(index)
        if call is None:
            call = self.calls[index] = _Call(id=frag.get("id") or f"call_{secrets.token_hex(8)}")
        elif frag.get("id") and not call.id:
            call.id = frag["id"]
        fn = frag.get("function") or {}
        if fn.get("name"):
            # Some servers repeat the name in every fragment; only a new name is appended.
            if not call.name.endswith(fn["name"]):
                call.name += fn["name"]
        if fn.get("arguments"):
            call.arguments += fn["arguments"]

    def tool_calls(self) -> list[_Call]:
        return [self.calls[i] for i in sorted(self.calls)]


def _wire_calls(calls: list[_Call]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


class ToolLoop:
    def __init__(self, agent: AgentDefinition, mcp_tools: list[McpTool], body: dict[str, Any],
                 model_call: ModelCall, tool_call: ToolCall, completion_id: str, created: int,
                 tool_trace: ToolTrace | None = None) -> None:
        self.agent = agent
        self.body = body
        self._model_call = model_call
        self._tool_call = tool_call
        self._tool_trace = tool_trace
        self.id = completion_id
        self.created = created
        client_tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
        self.tools, self.mcp_by_name = build_tools(mcp_tools, client_tools)
        self.client_tool_names = {t["function"]["name"] for t in client_tools if isinstance(t.get("function"), dict)}
        self.usage = Usage()
        self.turns = 0
        self._seen: Counter[tuple[str, str]] = Counter()

    # -- chunk construction
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.agent.name,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}

    def _activity(self, text: str) -> dict[str, Any]:
        return self._chunk({"reasoning_content": text})

    def _request(self, messages: list[dict[str, Any]], answer_now: bool) -> dict[str, Any]:
        params = {k: v for k, v in self.body.items() if k not in _LOOP_OWNED}
        out: dict[str, Any] = {**self.agent.defaults, **params, "model": self.agent.model, "messages": messages}
        if self.tools:
            out["tools"] = self.tools
            if answer_now:
                out["tool_choice"] = "none"
        return out

    # -- the loop
    async def run(self) -> AsyncGenerator[dict[str, Any], None]:
        prompt = [{"role": "system", "content": self.agent.system_prompt}] if self.agent.system_prompt else []
        messages: list[dict[str, Any]] = [*prompt,
                                          *self.body["messages"]]
        started = False
        sent_text = ""  # the answer so far, to separate the texts of two turns
        answer_now = False
        while True:
            self.turns += 1
            turn = _Turn()
            separate = bool(sent_text) and not sent_text.endswith("\n")
            async with contextlib.aclosing(self._model_call(self._request(messages, answer_now))) as chunks:
                async for chunk in chunks:
                    if (usage := usage_from(chunk.get("usage"))) is not None:
                        self.usage.add(usage)
                    for choice in chunk.get("choices") or ():
                        if choice.get("index", 0) != 0:
                            continue
                        if not started:
                            started = True
                            yield self._chunk({"role": "assistant", "content": ""})
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            if separate:
                                text, separate = "\n\n" + text, False
                            turn.content.append(text)
                            sent_text += text
                            yield self._chunk({"content": text})
                        thinking = delta.get("reasoning_content") or delta.get("reasoning")
                        if isinstance(thinking, str) and thinking:
                            yield self._activity(thinking)
                        for frag in delta.get("tool_calls") or ():
                            if isinstance(frag, dict):
                                turn.add_fragment(frag)
                        if choice.get("finish_reason"):
                            turn.finish = choice["finish_reason"]
            if not started:  # an upstream stream with no choice at all: still a valid (empty) answer
                started = True
                yield self._chunk({"role": "assistant", "content": ""})
            calls = turn.tool_calls()
            if not calls:
                yield self._chunk({}, turn.finish or "stop")
                break
            client_calls = [c for c in calls if c.name in self.client_tool_names]
            if client_calls:
                frags = [{"index": i, **call} for i, call in enumerate(_wire_calls(client_calls))]
                yield self._chunk({"tool_calls": frags})
                yield self._chunk({}, "tool_calls")
                break
            if self.turns >= self.agent.max_turns:
                note = (f"{chr(10) * 2 if sent_text else ''}[The agent stopped after {self.agent.max_turns} "
                        "model turns without a final answer.]")
                yield self._chunk({"content": note})
                yield self._chunk({}, "length")
                break
            messages.append({"role": "assistant", "content": "".join(turn.content) or None,
                             "tool_calls": _wire_calls(calls)})
            for call in calls:
                yield self._activity(f"Calling {self._label(call)} {call.arguments[:_ACTIVITY_ARGS_MAX]}\n")
            outcomes, blocked = await self._run_calls(calls)
            answer_now = blocked == len(calls)
            for call, outcome in zip(calls, outcomes, strict=True):
                if outcome.is_error:
                    yield self._activity(f"-> {self._label(call)} failed: {outcome.text[:_ACTIVITY_ARGS_MAX]}\n")
                else:
                    yield self._activity(f"-> {self._label(call)}: {len(outcome.text)} chars\n")
                text = f"Error: {outcome.text}" if outcome.is_error else outcome.text
                messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        yield {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.agent.name,
               "choices": [], "usage": {"prompt_tokens": self.usage.prompt_tokens,
                                        "completion_tokens": self.usage.completion_tokens,
                                        "total_tokens": self.usage.total_tokens}}

    def _label(self, call: _Call) -> str:
        tool = self.mcp_by_name.get(call.name)
        return f"{tool.server}.{tool.name}" if tool is not None else call.name

    async def _run_calls(self, calls: list[_Call]) -> tuple[list[ToolOutcome], int]:
        """Run the calls in parallel; (outcomes in call order, number of calls refused as repeats)."""
        blocked = 0
        jobs: list[Coroutine[Any, Any, ToolOutcome]] = []
        for call in calls:
            key = (call.name, _canonical(call.arguments))
            self._seen[key] += 1
            if self._seen[key] > REPEAT_LIMIT:
                blocked += 1
                jobs.append(_ready(ToolOutcome(
                    f"not run: `{call.name}` was already called {REPEAT_LIMIT} times with these same arguments. "
                    "Use the results you already have, or answer the user now.", True)))
            else:
                jobs.append(self._run_one(call))
        async with asyncio.TaskGroup() as group:  # a cancelled request cancels every call in flight
            tasks = [group.create_task(job) for job in jobs]
        return [t.result() for t in tasks], blocked

    async def _run_one(self, call: _Call) -> ToolOutcome:
        tool = self.mcp_by_name.get(call.name)
        if tool is None:
            available = ", ".join(sorted(self.mcp_by_name)) or "none"
            return ToolOutcome(f"unknown tool `{call.name}`; available tools: {available}", True)
        try:
            args = orjson.loads(call.arguments) if call.arguments.strip() else {}
        except orjson.JSONDecodeError as exc:
            return ToolOutcome(f"the arguments of `{call.name}` are not valid JSON ({exc})", True)
        if not isinstance(args, dict):
            return ToolOutcome(f"the arguments of `{call.name}` must be a JSON object", True)
        span = self._tool_trace(tool, call.id, call.arguments) if self._tool_trace is not None else None
        try:
            outcome = await self._tool_call(tool, args)
        except Exception as exc:  # a tool must never break the loop: the model hears about it instead
            outcome = ToolOutcome(f"{type(exc).__name__}: {exc}", True)
        except BaseException:  # cancelled (the client left): the span still ends
            if span is not None:
                span.done(ToolOutcome("cancelled", True))
            raise
        if span is not None:
            span.done(outcome)
        return outcome


async def _ready(outcome: ToolOutcome) -> ToolOutcome:
    return outcome


def _canonical(arguments: str) -> str:
    try:
        return orjson.dumps(orjson.loads(arguments), option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return arguments


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Fold the loop's chunks into one `chat.completion`."""
    content: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    finish: str | None = None
    usage: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    async for chunk in chunks:
        first = first or chunk
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            if delta.get("reasoning_content"):
                reasoning.append(delta["reasoning_content"])
            for frag in delta.get("tool_calls") or ():
                tool_calls.append({k: v for k, v in frag.items() if k != "index"})
            finish = choice.get("finish_reason") or finish
    assert first is not None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {"id": first["id"], "object": "chat.completion", "created": first["created"], "model": first["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish or "stop"}],
            "usage": usage}
