"""A scripted fake OpenAI chat upstream for agent tests: it decides its answer from the conversation.

The last user message is the script. Plain text: the answer is "Plain answer." (no tools). A JSON
object `{"calls": [{"name": ..., "arguments": {...}}, ...], "rounds": 1, "preamble": "...",
"answer": "..."}`: while fewer than `rounds` tool rounds happened since that user message (an
assistant message with `tool_calls` counts as one; `"rounds": "forever"` never stops), the answer
is those tool calls (streamed as real argument fragments, interleaved across indices), preceded by
`preamble` text if given; then the final answer is `answer` or "Tool said: " + the tool results
joined by " | ". Every call reports usage prompt 10 / completion 5. Stream and non-stream.
Requests are recorded in `requests`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAI

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def _script(messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the script of the last user message or None, the messages after it)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            content = messages[i].get("content")
            after = messages[i + 1:]
            if isinstance(content, str) and content.startswith("{"):
                return json.loads(content), after
            return None, after
    return None, []


def decide(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(text, tool calls) of the next answer."""
    script, after = _script(messages)
    if script is None:
        return "Plain answer.", []
    rounds_done = sum(1 for m in after if m.get("role") == "assistant" and m.get("tool_calls"))
    rounds = script.get("rounds", 1)
    if rounds == "forever" or rounds_done < rounds:
        calls = [{"id": f"call_{rounds_done}_{i}", "name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}
                 for i, c in enumerate(script["calls"])]
        return script.get("preamble", ""), calls
    if "answer" in script:
        return script["answer"], []
    results = [str(m.get("content")) for m in after if m.get("role") == "tool"]
    return "Tool said: " + " | ".join(results), []


class FakeAgentUpstream(FakeOpenAI):
    """Only `/v1/chat/completions` behaves differently from FakeOpenAI (`decide` may be replaced)."""

    def decide(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """(text, tool calls) of the answer to a chat body (a subclass may play another script)."""
        return decide(body.get("messages") or [])

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        text, calls = self.decide(body)
        model = body.get("model", "")
        cid = f"chatcmpl-agentfake{len(self.requests)}"
        created = int(time.time())
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
            if calls:
                message["tool_calls"] = [{"id": c["id"], "type": "function",
                                          "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
            return web.json_response({"id": cid, "object": "chat.completion", "created": created, "model": model,
                                      "choices": [{"index": 0, "message": message, "logprobs": None,
                                                   "finish_reason": finish}], "usage": USAGE})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                chunk["usage"] = None
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        for n, word in enumerate(text.split(" ") if text else ()):
            await send({"content": word if n == 0 else " " + word})
        for i, c in enumerate(calls):  # the first fragment of each index carries id, type and name
            await send({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                        "function": {"name": c["name"], "arguments": ""}}]})
        half = [len(c["arguments"]) // 2 for c in calls]
        for part in (0, 1):
            for i, c in enumerate(calls):  # interleaved across indices, as parallel calls stream
                piece = c["arguments"][:half[i]] if part == 0 else c["arguments"][half[i]:]
                await send({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        await send({}, finish)
        if include_usage:
            await resp.write(b"data: " + json.dumps({"id": cid, "object": "chat.completion.chunk",
                                                     "created": created, "model": model, "choices": [],
                                                     "usage": USAGE}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
