"""Hub -> Anthropic Messages: the non-stream `message` object, the streaming event sequence and the
error body, done once.

The stream encoder turns OpenAI chunks into Anthropic events: `message_start`, `ping`, then one
content block per thinking run, text run or tool call (`content_block_start` / `_delta` /
`_stop`, indices 0, 1, ... in start order), then `message_delta` (stop reason, usage) and
`message_stop`. `message_start` carries the prompt's input tokens: the upstream's when its first
chunk has usage, else an estimate (token_estimate.py), which `message_delta` corrects with the
upstream's final count. Anthropic blocks cannot interleave, while OpenAI may interleave the argument
fragments of parallel tool calls: the first open tool call streams live, later ones are held and
emitted whole when the current block ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..errors import GatewayError

__all__ = ["StreamEncoder", "error_body", "error_type", "new_message_id", "stop_reason", "to_anthropic_message",
           "to_anthropic_usage"]

Event = tuple[str, dict[str, Any]]

_ERROR_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(err: GatewayError) -> str:
    if err.status in _ERROR_TYPE_BY_STATUS:
        return _ERROR_TYPE_BY_STATUS[err.status]
    return "api_error" if err.status >= 500 else "invalid_request_error"


def error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err), "message": err.message}}


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def stop_reason(finish: Any, has_tool_calls: bool, matched_stop: str | None) -> str:
    if has_tool_calls and finish in ("tool_calls", "function_call", "stop", None):
        return "tool_use"  # some servers say "stop" after tool calls
    if finish == "length":
        return "max_tokens"
    if finish == "content_filter":
        return "refusal"
    if matched_stop is not None:
        return "stop_sequence"
    return "end_turn"


def _matched_stop(choice: dict[str, Any], stops: list[str]) -> str | None:
    # OpenAI does not say which stop sequence ended the text; vLLM does, in `stop_reason`.
    matched = choice.get("stop_reason")
    return matched if isinstance(matched, str) and matched in stops else None


def to_anthropic_usage(raw: Any) -> dict[str, int]:
    """OpenAI usage -> Anthropic's, whose input_tokens exclude cache reads and writes."""
    usage = raw if isinstance(raw, dict) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    prompt = _int(usage.get("prompt_tokens"))
    cache_read = _int(details.get("cached_tokens"))
    cache_write = _int(details.get("cache_creation_tokens") or details.get("cache_write_tokens"))
    return {
        "input_tokens": max(0, prompt - cache_read - cache_write),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}  # keep what the model said rather than lose it
    return value if isinstance(value, dict) else {"value": value}


def _reasoning(obj: dict[str, Any]) -> str | None:
    # DeepSeek and vLLM say reasoning_content; Ollama, OpenRouter and newer vLLM say reasoning.
    text = obj.get("reasoning_content") or obj.get("reasoning")
    return text if isinstance(text, str) and text else None


def to_anthropic_message(hub: dict[str, Any], model: str, stops: list[str]) -> dict[str, Any]:
    """A chat.completion -> an Anthropic `message` (first choice; Anthropic has no `n`)."""
    choices = hub.get("choices") or [{}]
    choice: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
    message: dict[str, Any] = m if isinstance(m := choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    if (thinking := _reasoning(message)) is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for call in calls:
        fn: dict[str, Any] = f if isinstance(f := call.get("function"), dict) else {}
        content.append({"type": "tool_use", "id": call.get("id") or _tool_id(), "name": fn.get("name") or "",
                        "input": _tool_input(fn.get("arguments"))})
    matched = _matched_stop(choice, stops)
    reason = stop_reason(choice.get("finish_reason"), bool(calls), matched)
    return {
        "id": new_message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": reason, "stop_sequence": matched if reason == "stop_sequence" else None,
        "usage": to_anthropic_usage(hub.get("usage")),
    }


def _tool_id() -> str:
    return "toolu_" + secrets.token_hex(12)


class _HeldCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []


class StreamEncoder:
    """Feeds on OpenAI chunks, yields Anthropic (event name, data) pairs."""

    def __init__(self, model: str, stops: list[str], estimate: Callable[[], int] | None = None) -> None:
        self.model = model
        self.stops = stops
        # The prompt's estimated input tokens, for message_start when the upstream's count comes last.
        self.estimate = estimate
        self.estimated: int | None = None
        self.started = False
        self.index = -1  # index of the last block started
        self.open_kind: str | None = None  # "text" | "thinking" | "tool" while a block is open
        self.open_call: int | None = None  # OpenAI tool-call index streaming in the open block
        self.seen_calls: set[int] = set()
        self.held: dict[int, _HeldCall] = {}
        self.finish: Any = None
        self.matched: str | None = None
        self.usage: Any = None

    def start(self, first: dict[str, Any]) -> Iterator[Event]:
        self.started = True
        usage = to_anthropic_usage(first.get("usage"))
        if not first.get("usage") and self.estimate is not None:
            # OpenAI sends usage last; Anthropic clients read the prompt size here (context meters).
            self.estimated = usage["input_tokens"] = self.estimate()
        message: dict[str, Any] = {"id": new_message_id(), "type": "message", "role": "assistant", "model": self.model,
                                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        yield "message_start", {"type": "message_start", "message": message}
        yield "ping", {"type": "ping"}

    def feed(self, chunk: dict[str, Any]) -> Iterator[Event]:
        if not self.started:
            yield from self.start(chunk)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta: dict[str, Any] = d if isinstance(d := choice.get("delta"), dict) else {}
            if (thinking := _reasoning(delta)) is not None:
                yield from self._open("thinking")
                yield self._delta({"type": "thinking_delta", "thinking": thinking})
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                yield from self._open("text")
                yield self._delta({"type": "text_delta", "text": text})
            for frag in delta.get("tool_calls") or ():
                if isinstance(frag, dict):
                    yield from self._tool_fragment(frag)
            if choice.get("finish_reason") is not None:
                self.finish = choice["finish_reason"]
                self.matched = _matched_stop(choice, self.stops) or self.matched

    def end(self) -> Iterator[Event]:
        yield from self._close()
        usage = to_anthropic_usage(self.usage)
        if self.usage is None and self.estimated is not None:
            usage["input_tokens"] = self.estimated  # no count came: keep the estimate rather than say 0
        reason = stop_reason(self.finish, bool(self.seen_calls), self.matched)
        yield "message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": reason,
                                          "stop_sequence": self.matched if reason == "stop_sequence" else None},
                                "usage": usage}
        yield "message_stop", {"type": "message_stop"}

    def _delta(self, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}

    def _start_block(self, block: dict[str, Any]) -> Event:
        self.index += 1
        return "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}

    def _open(self, kind: str) -> Iterator[Event]:
        if self.open_kind == kind and kind != "tool":
            return
        yield from self._close()
        self.open_kind = kind
        if kind == "text":
            yield self._start_block({"type": "text", "text": ""})
        else:
            yield self._start_block({"type": "thinking", "thinking": "", "signature": ""})

    def _close(self) -> Iterator[Event]:
        """End the open block, then emit every held tool call whole."""
        if self.open_kind is not None:
            yield "content_block_stop", {"type": "content_block_stop", "index": self.index}
            self.open_kind, self.open_call = None, None
        for key in sorted(self.held):
            call = self.held.pop(key)
            yield self._start_block({"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
            if call.arguments:
                yield self._delta({"type": "input_json_delta", "partial_json": "".join(call.arguments)})
            yield "content_block_stop", {"type": "content_block_stop", "index": self.index}

    def _tool_fragment(self, frag: dict[str, Any]) -> Iterator[Event]:
        index = frag.get("index", 0)
        fn: dict[str, Any] = f if isinstance(f := frag.get("function"), dict) else {}
        arguments = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        if index not in self.seen_calls:
            self.seen_calls.add(index)
            call_id, name = frag.get("id") or _tool_id(), fn.get("name") or ""
            if self.open_kind == "tool":
                self.held[index] = _HeldCall(call_id, name)  # another call is streaming: wait for it
            else:
                yield from self._close()
                self.open_kind, self.open_call = "tool", index
                yield self._start_block({"type": "tool_use", "id": call_id, "name": name, "input": {}})
        if not arguments:
            return
        if index == self.open_call:
            yield self._delta({"type": "input_json_delta", "partial_json": arguments})
        elif index in self.held:
            self.held[index].arguments.append(arguments)
        # Else the call's block already ended because text came in between, which models do not do;
        # an Anthropic block cannot reopen, so such a fragment has nowhere to go.
