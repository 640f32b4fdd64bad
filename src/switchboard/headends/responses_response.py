"""Hub -> Responses API: a chat completion as a `response` object, and a chunk stream as the Responses
event stream.

Output items: `reasoning` (the upstream's reasoning or thinking, as a summary), `message` with
`output_text` parts (`annotations: []`) or a `refusal`, `function_call` (`call_id` = the chat tool
call's id; a namespaced tool comes back as its name plus `namespace`), `custom_tool_call` (the
bridged function's `input` argument, raw), `tool_search_call` (a call of the bridged client-executed
`tool_search`: `execution: "client"`, its arguments as an object; no argument delta events).
`status` is `completed`, or `incomplete` with `incomplete_details.reason` `max_output_tokens`
(finish `length`) or `content_filter`.

The stream: `response.created`, `response.in_progress`, then per item `response.output_item.added`,
its content events (`content_part.added` / `output_text.delta` / `.done` / `content_part.done`,
`reasoning_summary_part.added` / `reasoning_summary_text.delta` / `.done` / `part.done`,
`function_call_arguments.delta` / `.done`, `custom_tool_call_input.delta` / `.done`) and
`response.output_item.done`; then exactly one of `response.completed`, `response.incomplete` or
`response.failed`. Every event has its `event:` line and a `sequence_number` counting from 0; no
`[DONE]`. A custom tool's input is only known whole once its JSON arguments are complete, so its
delta comes in one piece at the end.

Item ids name their response: `<prefix>_<the response id's random part><4 hex: the item's slot>`
(input items from slot 0, output items from slot 8000), so an `item_reference` sent without
`previous_response_id` (as the Vercel AI SDK sends an earlier answer) finds its stored response.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..errors import GatewayError
from ..hub import Chunk, usage_from_responses
from ..request_record import RequestRecord
from ..sse import event_frame
from .responses_mcp import ITEM_KEY
from .responses_request import CUSTOM_INPUT, TOOL_SEARCH, ResponsesRequest, ToolNames

__all__ = ["BRIDGED_PREFIX", "NativeResponsesEncoder", "ResponsesStreamEncoder", "bridged_response_id", "failure",
           "input_item_id", "new_id", "output_item_id", "response_envelope", "response_from_chat", "response_of_item",
           "responses_usage"]

_ID_HEX = 48  # the random part of a response id: 24 bytes
_OUTPUT_SLOT = 0x8000  # item slots (4 hex digits): input items from 0, output items from here


class _RandomHex:
    """Unpredictable hex strings without a system call each: BLAKE2b keyed with a secret drawn once
    per process, over a counter (a keyed PRF: no output tells anything about the next)."""

    __slots__ = ("_counter", "_key")

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._counter = itertools.count()

    def next(self) -> str:
        return hashlib.blake2b(next(self._counter).to_bytes(8, "little"), key=self._key,
                               digest_size=_ID_HEX // 2).hexdigest()


_random_hex = _RandomHex()


def new_id(prefix: str) -> str:
    return f"{prefix}_{_random_hex.next()}"


def _slot_id(response_id: str, prefix: str, slot: int) -> str:
    if slot > 0xFFFF:  # past the slots: an id that names no response
        return new_id(prefix)
    return f"{prefix}_{response_id.partition('_')[2]}{slot:04x}"


def input_item_id(response_id: str, prefix: str, index: int) -> str:
    """The id given to input item `index` of a response when it is stored."""
    return _slot_id(response_id, prefix, index if index < _OUTPUT_SLOT else 0x10000)


def output_item_id(response_id: str, prefix: str, index: int) -> str:
    """The id of output item `index` of a response."""
    return _slot_id(response_id, prefix, _OUTPUT_SLOT + index)


def response_of_item(item: str) -> str | None:
    """The id of the response an item id was made for (`input_item_id`, `output_item_id`), or None for any
    other id."""
    prefix, _, rest = item.partition("_")
    marker = _BRIDGED_MARK if rest.startswith(_BRIDGED_MARK) else ""
    digits = rest[len(marker):]
    if not prefix or len(digits) != _ID_HEX + 4 or digits.strip("0123456789abcdef"):
        return None
    return f"resp_{marker}{digits[:_ID_HEX]}"


# The ids of responses this gateway made (bridged): a native upstream never saw them, so a follow-up
# routed there gets the stored conversation as its input instead of `previous_response_id`.
_BRIDGED_MARK = "sb"
BRIDGED_PREFIX = "resp_" + _BRIDGED_MARK


def bridged_response_id() -> str:
    """`resp_sb` + the random part; its items' ids carry both (`msg_sb<random><slot>`)."""
    return BRIDGED_PREFIX + _random_hex.next()


def responses_usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    prompt_details: dict[str, Any] = v if isinstance(v := usage.get("prompt_tokens_details"), dict) else {}
    completion_details: dict[str, Any] = (
        v if isinstance(v := usage.get("completion_tokens_details"), dict) else {})
    cache_write = prompt_details.get("cache_write_tokens") or usage.get("cache_write_tokens") or 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": prompt_details.get("cached_tokens") or 0,
                                     "cache_write_tokens": cache_write},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens") or 0},
            "total_tokens": usage.get("total_tokens") or prompt + completion}


def _status(finish: Any) -> tuple[str, dict[str, str] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_envelope(request: ResponsesRequest, response_id: str, created_at: int, status: str,
                      output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
                      error: dict[str, Any] | None = None, incomplete: dict[str, str] | None = None) -> dict[str, Any]:
    body = request.body
    reasoning: dict[str, Any] = v if isinstance(v := body.get("reasoning"), dict) else {}
    envelope = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "background": False,
        "error": error, "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": body.get("max_tool_calls"),
        "model": request.model, "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": body.get("service_tier") or "default", "store": request.store,
        "temperature": body.get("temperature", 1.0),
        "text": text if isinstance(text := body.get("text"), dict) else {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": [_echoed_tool(t) for t in body.get("tools") or ()],
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation") or "disabled",
        "metadata": body.get("metadata") or {},
    }
    if usage is not None:
        envelope["usage"] = usage
    for name in ("user", "prompt_cache_key", "safety_identifier"):  # strings when given, absent otherwise
        if isinstance(body.get(name), str):
            envelope[name] = body[name]
    return envelope


def _echoed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A request tool as a response lists it: function tools with their `parameters` and `strict` filled in;
    an `mcp` tool without its `authorization` and header values (they are the client's secrets: never stored)."""
    if tool.get("type") == "mcp" and ("authorization" in tool or "headers" in tool):
        echoed = {k: v for k, v in tool.items() if k != "authorization"}
        if isinstance(tool.get("headers"), dict):
            echoed["headers"] = dict.fromkeys(tool["headers"], "<redacted>")
        return echoed
    if tool.get("type") != "function":
        return tool
    return {**tool, "parameters": tool.get("parameters"), "strict": tool.get("strict")}


def failure(err: GatewayError) -> dict[str, str]:
    """A gateway error as a Response's `error` (its `code` is one of the spec's; ours is in the message)."""
    code = "rate_limit_exceeded" if err.status == 429 else "server_error"
    return {"code": code, "message": f"{err.message} ({err.code or err.type})"}


def _reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"type": "reasoning", "id": item_id, "summary": summary, "status": status}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, parts: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": parts}


def _is_search(names: ToolNames, chat_name: str) -> bool:
    """Whether a chat tool call is a call of the bridged client-executed tool search."""
    return names.tool_search and chat_name == TOOL_SEARCH


def _item_prefix(names: ToolNames, chat_name: str) -> str:
    return "tsc" if _is_search(names, chat_name) else "ctc" if chat_name in names.custom else "fc"


def _call_item(names: ToolNames, item_id: str, call_id: str, chat_name: str, arguments: str,
               status: str = "completed") -> dict[str, Any]:
    if _is_search(names, chat_name):
        return {"type": "tool_search_call", "id": item_id, "call_id": call_id, "execution": "client",
                "arguments": _search_arguments(arguments), "status": status}
    namespace, name = names.namespaces.get(chat_name, (None, chat_name))
    if chat_name in names.custom:
        item: dict[str, Any] = {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name,
                                "input": _custom_input(arguments), "status": status}
    else:
        item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
                "status": status}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def _search_arguments(arguments: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"query": arguments}  # not JSON: the text is the query


def _custom_input(arguments: str) -> str:
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments  # not the JSON we asked for: the raw text is the best input there is
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return str(parsed[CUSTOM_INPUT])
    return arguments


def _reasoning_text(message: dict[str, Any]) -> str:
    text = message.get("reasoning_content") or message.get("reasoning")
    return text if isinstance(text, str) else ""


def response_from_chat(chat: dict[str, Any], request: ResponsesRequest, response_id: str,
                       created_at: int) -> dict[str, Any]:
    """A `chat.completion` as the `response` object (choice 0)."""
    choices = chat.get("choices") or [{}]
    choice: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
    message: dict[str, Any] = v if isinstance(v := choice.get("message"), dict) else {}
    output: list[dict[str, Any]] = []

    def next_id(prefix: str) -> str:
        return output_item_id(response_id, prefix, len(output))

    if reasoning := _reasoning_text(message):
        output.append(_reasoning_item(next_id("rs"), reasoning))
    parts: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(_text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(_message_item(next_id("msg"), parts))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        name = function.get("name") or ""
        output.append(_call_item(request.tools, next_id(_item_prefix(request.tools, name)),
                                 call.get("id") or new_id("call"), name, function.get("arguments") or ""))
    status, incomplete = _status(choice.get("finish_reason"))
    return response_envelope(request, response_id, created_at, status, output, responses_usage(chat.get("usage")),
                             incomplete=incomplete)


class _Call:
    __slots__ = ("arguments", "call_id", "item_id", "name", "output_index")

    def __init__(self, output_index: int, item_id: str, call_id: str, name: str) -> None:
        self.output_index = output_index
        self.item_id = item_id
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []


Store = Callable[[dict[str, Any]], Awaitable[None]]


class ResponsesStreamEncoder:
    """Hub chunks -> Responses events (the relay's `StreamEncoder`). `before_end` (e.g. storing the
    response) runs before the final event is sent, so a follow-up sent at once finds it."""

    def __init__(self, request: ResponsesRequest, response_id: str, created_at: int,
                 before_end: Store | None = None) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.before_end = before_end
        self.sequence = 0
        self.output: list[dict[str, Any] | None] = []  # finished items by output_index (None while open)
        self.started = False
        self.text: tuple[int, str, list[str]] | None = None  # open message: (output_index, id, deltas)
        self.reasoning: tuple[int, str, list[str]] | None = None
        self.calls: dict[int, _Call] = {}  # by the chat tool-call index
        self.finish: Any = None
        self.usage: Any = None
        self.final: dict[str, Any] | None = None  # the response as it ended

    # -- framing
    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self.sequence
        self.sequence += 1
        return event_frame(kind, payload)

    def _envelope(self, status: str, **extra: Any) -> dict[str, Any]:
        output = [item for item in self.output if item is not None]
        return response_envelope(self.request, self.response_id, self.created_at, status, output, **extra)

    def _start(self, out: list[bytes]) -> None:
        self.started = True
        out.append(self._event("response.created", {"response": self._envelope("in_progress")}))
        out.append(self._event("response.in_progress", {"response": self._envelope("in_progress")}))

    def _next_id(self, prefix: str) -> str:
        """The id of the item opened next (its output index is its slot)."""
        return output_item_id(self.response_id, prefix, len(self.output))

    def _open(self, item: dict[str, Any], out: list[bytes]) -> int:
        index = len(self.output)
        self.output.append(None)
        out.append(self._event("response.output_item.added", {"output_index": index, "item": item}))
        return index

    def _done(self, index: int, item: dict[str, Any], out: list[bytes]) -> None:
        self.output[index] = item
        out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))

    # -- items
    def _reasoning_delta(self, text: str, out: list[bytes]) -> None:
        if self.reasoning is None:
            self._close_text(out)
            item_id = self._next_id("rs")
            index = self._open({"type": "reasoning", "id": item_id, "summary": [], "status": "in_progress"}, out)
            out.append(self._event("response.reasoning_summary_part.added", {
                "item_id": item_id, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}))
            self.reasoning = (index, item_id, [])
        index, item_id, deltas = self.reasoning
        deltas.append(text)
        out.append(self._event("response.reasoning_summary_text.delta", {
            "item_id": item_id, "output_index": index, "summary_index": 0, "delta": text}))

    def _close_reasoning(self, out: list[bytes]) -> None:
        if self.reasoning is None:
            return
        index, item_id, deltas = self.reasoning
        self.reasoning = None
        text = "".join(deltas)
        out.append(self._event("response.reasoning_summary_text.done", {
            "item_id": item_id, "output_index": index, "summary_index": 0, "text": text}))
        out.append(self._event("response.reasoning_summary_part.done", {
            "item_id": item_id, "output_index": index, "summary_index": 0,
            "part": {"type": "summary_text", "text": text}}))
        self._done(index, _reasoning_item(item_id, text), out)

    def _text_delta(self, text: str, out: list[bytes]) -> None:
        if self.text is None:
            self._close_reasoning(out)
            item_id = self._next_id("msg")
            index = self._open(_message_item(item_id, [], "in_progress"), out)
            out.append(self._event("response.content_part.added", {
                "item_id": item_id, "output_index": index, "content_index": 0, "part": _text_part("")}))
            self.text = (index, item_id, [])
        index, item_id, deltas = self.text
        deltas.append(text)
        out.append(self._event("response.output_text.delta", {
            "item_id": item_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}))

    def _close_text(self, out: list[bytes]) -> None:
        if self.text is None:
            return
        index, item_id, deltas = self.text
        self.text = None
        text = "".join(deltas)
        out.append(self._event("response.output_text.done", {
            "item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}))
        out.append(self._event("response.content_part.done", {
            "item_id": item_id, "output_index": index, "content_index": 0, "part": _text_part(text)}))
        self._done(index, _message_item(item_id, [_text_part(text)]), out)

    def _call_fragment(self, frag: dict[str, Any], out: list[bytes]) -> None:
        chat_index = frag.get("index", 0)
        function: dict[str, Any] = v if isinstance(v := frag.get("function"), dict) else {}
        call = self.calls.get(chat_index)
        if call is None:
            self._close_reasoning(out)
            self._close_text(out)
            name = function.get("name") or ""
            item_id = self._next_id(_item_prefix(self.request.tools, name))
            call = _Call(len(self.output), item_id, frag.get("id") or new_id("call"), name)
            self.calls[chat_index] = call
            self._open(_call_item(self.request.tools, item_id, call.call_id, name, "", "in_progress"), out)
        elif function.get("name") and not call.name.endswith(function["name"]):
            call.name += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.arguments.append(arguments)
            if call.name not in self.request.tools.custom and not _is_search(self.request.tools, call.name):
                out.append(self._event("response.function_call_arguments.delta", {
                    "item_id": call.item_id, "output_index": call.output_index, "delta": arguments}))

    def _close_calls(self, out: list[bytes]) -> None:
        for call in self.calls.values():
            arguments = "".join(call.arguments)
            item = _call_item(self.request.tools, call.item_id, call.call_id, call.name, arguments)
            if item["type"] == "custom_tool_call":
                out.append(self._event("response.custom_tool_call_input.delta", {
                    "item_id": call.item_id, "output_index": call.output_index, "delta": item["input"]}))
                out.append(self._event("response.custom_tool_call_input.done", {
                    "item_id": call.item_id, "output_index": call.output_index, "input": item["input"]}))
            elif item["type"] == "function_call":
                out.append(self._event("response.function_call_arguments.done", {
                    "item_id": call.item_id, "output_index": call.output_index, "name": item["name"],
                    "arguments": arguments}))
            self._done(call.output_index, item, out)
        self.calls = {}

    # -- the relay's encoder protocol
    def encode(self, batch: list[Chunk]) -> bytes:
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        for chunk in batch:
            if chunk.get("usage") is not None:
                self.usage = chunk["usage"]
            item = chunk.get(ITEM_KEY)
            if isinstance(item, dict):  # a whole item (responses_mcp: an mcp call, listing or approval request)
                self._close_reasoning(out)
                self._close_text(out)
                self._close_calls(out)
                self._done(self._open(item, out), item, out)
                continue
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta: dict[str, Any] = v if isinstance(v := choice.get("delta"), dict) else {}
                thinking = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(thinking, str) and thinking:
                    self._reasoning_delta(thinking, out)
                text = delta.get("content") or delta.get("refusal")
                if isinstance(text, str) and text:
                    self._text_delta(text, out)
                for frag in delta.get("tool_calls") or ():
                    if isinstance(frag, dict):
                        self._call_fragment(frag, out)
                if choice.get("finish_reason") is not None:
                    self.finish = choice["finish_reason"]
        return b"".join(out)

    async def end(self) -> bytes:
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        self._close_reasoning(out)
        self._close_text(out)
        self._close_calls(out)
        status, incomplete = _status(self.finish)
        final = self._envelope(status, usage=responses_usage(self.usage), incomplete=incomplete)
        self.final = final
        if self.before_end is not None:
            await self.before_end(final)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": final}))
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        failed = self._envelope("failed", usage=responses_usage(self.usage), error=failure(err))
        self.final = failed
        out.append(self._event("response.failed", {"response": failed}))
        return b"".join(out)


_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_FIRST_TOKEN = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                          "response.custom_tool_call_input.delta", "response.refusal.delta"})


class NativeResponsesEncoder:
    """A native upstream's Responses events, passed on with the public model name in their response
    objects. The terminal event is held back until `before_end` (storing) has run."""

    def __init__(self, model: str, record: RequestRecord, before_end: Store | None = None) -> None:
        self.model = model
        self.record = record
        self.before_end = before_end
        self.sequence = -1
        self.response: dict[str, Any] | None = None  # the latest response object seen
        self.terminal: dict[str, Any] | None = None

    def encode(self, batch: list[Chunk]) -> bytes:
        out: list[bytes] = []
        for event in batch:
            kind = event.get("type")
            if not isinstance(kind, str):
                continue
            response = event.get("response")
            if isinstance(response, dict):
                response["model"] = self.model
                self.response = response
            if isinstance(event.get("sequence_number"), int):
                self.sequence = event["sequence_number"]
            if kind in _FIRST_TOKEN:
                self.record.mark_first_token()
            if kind in _TERMINAL:
                self.terminal = event
                continue
            out.append(event_frame(kind, event))
        return b"".join(out)

    async def end(self) -> bytes:
        terminal = self.terminal
        if terminal is None:  # the upstream stream guarantees a terminal event; be safe anyway
            return self.error(GatewayError(502, "The upstream Responses stream ended without a final event.",
                                           "api_error", code="upstream_stream_truncated"))
        response: dict[str, Any] = r if isinstance(r := terminal.get("response"), dict) else {}
        self.record.usage = usage_from_responses(response.get("usage"))
        if self.before_end is not None and terminal["type"] != "response.failed":
            await self.before_end(response)
        return event_frame(str(terminal["type"]), terminal)

    def error(self, err: GatewayError) -> bytes:
        response = dict(self.response or {"object": "response", "model": self.model, "output": []})
        response.update(status="failed", error=failure(err))
        self.sequence += 1
        return event_frame("response.failed", {"type": "response.failed", "sequence_number": self.sequence,
                                               "response": response})
