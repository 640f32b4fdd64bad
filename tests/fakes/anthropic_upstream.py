"""A fake Anthropic Messages API upstream that speaks the real wire format, served on 127.0.0.1.

It validates requests as strictly as the real API (headers `x-api-key` (or a bearer key, as newer
SDKs send) and `anthropic-version`;
required `model`, `max_tokens`, `messages`; roles `user`/`assistant` alternating from `user`; known
block types per role; `tool_result` only in user turns, each answering a `tool_use` of the previous
assistant turn and every such `tool_use` answered; unknown top-level fields rejected) and answers
with an error body in Anthropic's shape: `{"type": "error", "error": {"type", "message"}, "request_id"}`.

Behaviour is chosen by the requested model name:

- any model: the reply text is "Hello from <model>" (three text_delta events when streaming)
- `echo`: the reply text is the text of the last user turn
- `tools`: a text block then two parallel `tool_use` blocks (get_weather {"city": "Paris"}, get_time
  {"tz": "CET"}; only the first when `disable_parallel_tool_use`), stop_reason `tool_use`; when
  the last user turn carries tool results, the reply text is "Results: <result texts joined by '; '>"
- a request whose `tool_choice` is `{"type": "tool", "name": N}` (any model): one `tool_use` of N
  with input {"answer": "Hello from <model>"}
- `thinking`: a thinking block (thinking_delta + signature_delta) before the text
- `stop-<reason>`: that stop_reason (`max_tokens`, `stop_sequence` with the first stop sequence,
  `refusal`, `pause_turn`...)
- `cached`: usage with cache_read_input_tokens 100 and cache_creation_input_tokens 20
- `error-<status>`: an Anthropic error body with that status (`error-429` adds retry-after: 7,
  `error-529` is overloaded_error)
- `cut`: the stream's connection is closed after the first text delta
- `truncated`: the stream ends cleanly at the HTTP level without message_stop
- `midstream-error`: an `event: error` (overloaded_error) after the first text delta
- `slow-<ms>`: waits that long before answering; `slowstream-<ms>`: that pause between stream events

Usage: input_tokens is always 10 (plus the cache fields), output_tokens the number of content
pieces. Every request is recorded (`requests`: path, headers, body) for assertions. Also serves
`POST /v1/messages/count_tokens` -> {"input_tokens": 10}.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

__all__ = ["FakeAnthropic"]

INPUT_TOKENS = 10

_TOP_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
    "output_config",
}
_COUNT_TOKENS_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                        "context_management", "output_config"}
_USER_BLOCKS = {"text", "image", "document", "tool_result", "search_result"}
_ASSISTANT_BLOCKS = {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
                     "web_search_tool_result"}
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


class Invalid(Exception):
    """A request the real API would reject."""

    def __init__(self, message: str, status: int = 400, etype: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.etype = etype


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_text(block: dict[str, Any], where: str) -> None:
    if not isinstance(block.get("text"), str):
        raise Invalid(f"{where}.text: Field required")
    if not block["text"]:
        raise Invalid("messages: text content blocks must be non-empty")


def _check_image(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise Invalid(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if source.get("media_type") not in _IMAGE_TYPES:
            raise Invalid(f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                          "'image/gif' or 'image/webp'")
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise Invalid(f"{where}.source.base64.data: Field required")
        if set(source) - {"type", "media_type", "data"}:
            raise Invalid(f"{where}.source.base64: Extra inputs are not permitted")
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
            raise Invalid(f"{where}.source.url.url: Field required")
        if set(source) - {"type", "url"}:
            raise Invalid(f"{where}.source.url: Extra inputs are not permitted")
    else:
        raise Invalid(f"{where}.source: Input tag '{source.get('type')}' found using 'type' does not match any "
                      "of the expected tags: 'base64', 'url', 'file'")


def _check_block(block: Any, role: str, where: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise Invalid(f"{where}.type: Field required")
    btype = block["type"]
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    if btype not in allowed:
        if btype == "tool_result":
            raise Invalid(f"{where}: tool_result blocks are only allowed in user messages")
        if btype == "tool_use":
            raise Invalid(f"{where}: tool_use blocks are only allowed in assistant messages")
        raise Invalid(f"{where}: Input tag '{btype}' found using 'type' does not match any of the expected tags")
    if btype == "text":
        _check_text(block, where)
        extra = set(block) - {"type", "text", "cache_control", "citations"}
    elif btype == "image":
        _check_image(block, where)
        extra = set(block) - {"type", "source", "cache_control"}
    elif btype == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise Invalid(f"{where}: tool_use blocks need `id` and `name`")
        if not isinstance(block.get("input"), dict):
            raise Invalid(f"{where}.input: Input should be a valid dictionary")
        extra = set(block) - {"type", "id", "name", "input", "cache_control"}
    elif btype == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise Invalid(f"{where}.tool_use_id: Field required")
        content = block.get("content", "")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image", "search_result",
                                                                          "document"):
                    raise Invalid(f"{where}.content.{j}: tool_result content must be text or image blocks")
                if part["type"] == "text":
                    _check_text(part, f"{where}.content.{j}")
                elif part["type"] == "image":
                    _check_image(part, f"{where}.content.{j}")
        elif not isinstance(content, str):
            raise Invalid(f"{where}.content: Input should be a valid string or list")
        if "is_error" in block and not isinstance(block["is_error"], bool):
            raise Invalid(f"{where}.is_error: Input should be a valid boolean")
        extra = set(block) - {"type", "tool_use_id", "content", "is_error", "cache_control"}
    elif btype == "thinking":
        if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
            raise Invalid(f"{where}: thinking blocks need `thinking` and `signature`")
        extra = set(block) - {"type", "thinking", "signature"}
    else:
        extra = set()
    if extra:
        raise Invalid(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise Invalid("messages: Field required")
    if not messages:
        raise Invalid("messages: at least one message is required")
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise Invalid(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise Invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        if set(message) - {"role", "content"}:
            raise Invalid(f"{where}.{sorted(set(message) - {'role', 'content'})[0]}: Extra inputs are not permitted")
        if i == 0 and role != "user":
            raise Invalid("messages: first message must use the \"user\" role")
        if i > 0 and messages[i - 1].get("role") == role:
            raise Invalid("messages: roles must alternate between \"user\" and \"assistant\", but found multiple "
                          f"\"{role}\" roles in a row")
        content = message.get("content")
        if isinstance(content, str):
            if not content and not (role == "assistant" and i == len(messages) - 1):
                raise Invalid(f"{where}: all messages must have non-empty content except for the optional final "
                              "assistant message")
        elif isinstance(content, list):
            if not content:
                raise Invalid(f"{where}: all messages must have non-empty content except for the optional final "
                              "assistant message")
            for j, block in enumerate(content):
                _check_block(block, role, f"{where}.content.{j}")
        else:
            raise Invalid(f"{where}.content: Field required")
        blocks = _blocks(message)
        if role == "user":
            answered = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
            unexpected = answered - previous_tool_ids
            if unexpected:
                raise Invalid(f"{where}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                              f"{sorted(unexpected)[0]}. Each `tool_result` block must have a corresponding "
                              "`tool_use` block in the previous message.")
            missing = previous_tool_ids - answered
            if missing:
                raise Invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                              f"after: {sorted(missing)[0]}. Each `tool_use` block must have a corresponding "
                              "`tool_result` block in the next message.")
            previous_tool_ids = set()
        else:
            previous_tool_ids = {b["id"] for b in blocks if b.get("type") == "tool_use"}


def _check_tools(tools: Any, tool_choice: Any) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise Invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise Invalid(f"tools.{i}.name: Field required")
            if not _TOOL_NAME.match(tool["name"]):
                raise Invalid(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise Invalid(f"tools.{i}.custom.input_schema: Input should be a valid dictionary with type object")
            extra = set(tool) - {"name", "description", "input_schema", "cache_control", "type", "strict"}
            if extra:
                raise Invalid(f"tools.{i}.custom.{sorted(extra)[0]}: Extra inputs are not permitted")
            if "description" in tool and not isinstance(tool["description"], str):
                raise Invalid(f"tools.{i}.custom.description: Input should be a valid string")
    if tool_choice is not None:
        if not isinstance(tool_choice, dict) or tool_choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', "
                          "'none'")
        if tool_choice["type"] == "tool" and not isinstance(tool_choice.get("name"), str):
            raise Invalid("tool_choice.tool.name: Field required")
        allowed = {"type", "disable_parallel_tool_use"} | ({"name"} if tool_choice["type"] == "tool" else set())
        if set(tool_choice) - allowed:
            raise Invalid(f"tool_choice.{tool_choice['type']}.{sorted(set(tool_choice) - allowed)[0]}: "
                          "Extra inputs are not permitted")
        if tool_choice["type"] == "tool" and tool_choice["name"] not in {t["name"] for t in tools or []}:
            raise Invalid(f"Tool '{tool_choice['name']}' not found in provided tools")


def validate_request(headers: Any, body: Any, api_keys: set[str] | None, count_tokens: bool = False) -> None:
    # The API also takes the key as a bearer token (newer anthropic SDKs send it that way).
    bearer = headers.get("authorization", "")
    key = headers.get("x-api-key") or (bearer[len("Bearer "):] if bearer.startswith("Bearer ") else "")
    if not key:
        raise Invalid("x-api-key header is required", 401, "authentication_error")
    if api_keys is not None and key not in api_keys:
        raise Invalid("invalid x-api-key", 401, "authentication_error")
    if not headers.get("anthropic-version"):
        raise Invalid("anthropic-version: header is required")
    if not isinstance(body, dict):
        raise Invalid("Input should be a valid dictionary")
    allowed = _COUNT_TOKENS_FIELDS if count_tokens else _TOP_FIELDS
    for name in body:
        if name not in allowed:
            raise Invalid(f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    if not count_tokens:
        if "max_tokens" not in body:
            raise Invalid("max_tokens: Field required")
        if not _is_int(body["max_tokens"]) or body["max_tokens"] < 1:
            raise Invalid("max_tokens: Input should be greater than or equal to 1")
    _check_messages(body.get("messages"))
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise Invalid("system: Input should be a valid string or list")
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise Invalid(f"system.{i}.type: Input should be 'text'")
            _check_text(block, f"system.{i}")
    for name in ("temperature", "top_p"):
        if name in body and (not _is_num(body[name]) or not 0 <= body[name] <= 1):
            raise Invalid(f"{name}: Input should be less than or equal to 1")
    if "top_k" in body and not _is_int(body["top_k"]):
        raise Invalid("top_k: Input should be a valid integer")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops)):
        raise Invalid("stop_sequences: Input should be a valid list of non-empty strings")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise Invalid("metadata: Input should be a valid dictionary")
        for name, value in metadata.items():
            if name != "user_id":
                raise Invalid(f"metadata.{name}: Extra inputs are not permitted")
            if value is not None and not isinstance(value, str):
                raise Invalid("metadata.user_id: Input should be a valid string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Invalid("stream: Input should be a valid boolean")
    _check_tools(body.get("tools"), body.get("tool_choice"))
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            raise Invalid("thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if not _is_int(budget) or budget < 1024:
                raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if not count_tokens and budget >= body["max_tokens"]:
                raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
            if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
                raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
            if body.get("temperature", 1) != 1:
                raise Invalid("`temperature` may only be set to 1 when thinking is enabled.")


def _error_body(etype: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


class FakeAnthropic(ThreadedServer):
    def __init__(self, api_keys: set[str] | None = None) -> None:
        self.api_keys = api_keys
        super().__init__()
        self.app.router.add_post("/v1/messages", self.messages)
        self.app.router.add_post("/v1/messages/count_tokens", self.count_tokens)

    @property
    def base_url(self) -> str:
        """Like the anthropic SDK's base URL: without `/v1`."""
        return f"http://127.0.0.1:{self.port}"

    # -- helpers
    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        return body

    def _rid(self) -> str:
        return f"req_fake{len(self.requests):04d}"

    def _error(self, status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        rid = self._rid()
        return web.json_response(_error_body(etype, message, rid), status=status,
                                 headers={"request-id": rid, **(headers or {})})

    def _reply(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
        """The content blocks (text split in pieces), the stop reason and the stop sequence."""
        model: str = body["model"]
        messages = body["messages"]
        last_blocks = _blocks(messages[-1])
        results = [b for b in last_blocks if b.get("type") == "tool_result"]
        choice = body.get("tool_choice") or {}
        blocks: list[dict[str, Any]] = []
        stop_reason = "end_turn"
        stop_sequence: str | None = None
        if model == "thinking":
            blocks.append({"type": "thinking", "pieces": ["Let me", " think."], "signature": "sig-fake"})
        if choice.get("type") == "tool":
            blocks.append({"type": "tool_use", "id": "toolu_forced01", "name": choice["name"],
                           "input": {"answer": f"Hello from {model}"}})
            return blocks, "tool_use", None
        if model == "tools" and not results:
            blocks.append({"type": "text", "pieces": ["Let me", " check."]})
            blocks.append({"type": "tool_use", "id": "toolu_weather01", "name": "get_weather",
                           "input": {"city": "Paris"}})
            if not choice.get("disable_parallel_tool_use"):
                blocks.append({"type": "tool_use", "id": "toolu_time02", "name": "get_time", "input": {"tz": "CET"}})
            return blocks, "tool_use", None
        if model == "tools":
            texts = [_text_of(r.get("content", "")) for r in results]
            blocks.append({"type": "text", "pieces": ["Results: ", "; ".join(texts)]})
        elif model == "echo":
            blocks.append({"type": "text", "pieces": [_text_of(messages[-1]["content"])]})
        else:
            blocks.append({"type": "text", "pieces": ["Hello", " from", f" {model}"]})
        if model.startswith("stop-"):
            stop_reason = model[len("stop-"):]
            if stop_reason == "stop_sequence":
                stop_sequence = (body.get("stop_sequences") or ["END"])[0]
        return blocks, stop_reason, stop_sequence

    def _usage(self, model: str, output_tokens: int) -> dict[str, Any]:
        cached = model == "cached"
        return {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 20 if cached else 0,
                "cache_read_input_tokens": 100 if cached else 0, "output_tokens": output_tokens,
                "service_tier": "standard"}

    # -- endpoints
    async def count_tokens(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        try:
            validate_request(request.headers, body, self.api_keys, count_tokens=True)
        except Invalid as exc:
            return self._error(exc.status, exc.etype, exc.message)
        return web.json_response({"input_tokens": INPUT_TOKENS}, headers={"request-id": self._rid()})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if body is None:
            return self._error(400, "invalid_request_error", "There was an issue with your request body: invalid JSON")
        try:
            validate_request(request.headers, body, self.api_keys)
        except Invalid as exc:
            return self._error(exc.status, exc.etype, exc.message)
        model: str = body["model"]
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-")[1]) / 1000)
        if model.startswith("error-"):
            status = int(model.split("-")[1])
            etype = _ERROR_TYPES.get(status, "api_error")
            headers = {"retry-after": "7"} if status == 429 else None
            message = "Overloaded" if status == 529 else f"fake upstream error {status}"
            return self._error(status, etype, message, headers)
        blocks, stop_reason, stop_sequence = self._reply(body)
        if body.get("stream"):
            return await self._stream(request, body, blocks, stop_reason, stop_sequence)
        content: list[dict[str, Any]] = []
        output_tokens = 0
        for block in blocks:
            if block["type"] == "text":
                content.append({"type": "text", "text": "".join(block["pieces"])})
                output_tokens += len(block["pieces"])
            elif block["type"] == "thinking":
                content.append({"type": "thinking", "thinking": "".join(block["pieces"]),
                                "signature": block["signature"]})
                output_tokens += len(block["pieces"])
            else:
                content.append(dict(block))
                output_tokens += 1
        rid = self._rid()
        return web.json_response({
            "id": f"msg_fake{len(self.requests):04d}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": self._usage(model, output_tokens),
        }, headers={"request-id": rid})

    async def _stream(self, request: web.Request, body: dict[str, Any], blocks: list[dict[str, Any]],
                      stop_reason: str, stop_sequence: str | None) -> web.StreamResponse:
        model: str = body["model"]
        rid = self._rid()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "request-id": rid,
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        pause = int(model.split("-")[1]) / 1000 if model.startswith("slowstream-") else 0.0
        self.active_streams += 1

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            if pause:
                await asyncio.sleep(pause)

        try:
            start_usage = self._usage(model, 1)
            await send("message_start", {"type": "message_start", "message": {
                "id": f"msg_fake{len(self.requests):04d}", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
            await send("ping", {"type": "ping"})
            output_tokens = 0
            text_deltas = 0
            for index, block in enumerate(blocks):
                if block["type"] == "text":
                    await send("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "text", "text": ""}})
                    for piece in block["pieces"]:
                        await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": {"type": "text_delta", "text": piece}})
                        output_tokens += 1
                        text_deltas += 1
                        if text_deltas == 1 and model == "cut":
                            assert request.transport is not None
                            request.transport.close()
                            return resp
                        if text_deltas == 1 and model == "midstream-error":
                            await send("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                            "message": "Overloaded"}})
                            await resp.write_eof()
                            return resp
                elif block["type"] == "thinking":
                    await send("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "thinking", "thinking": "",
                                                                         "signature": ""}})
                    for piece in block["pieces"]:
                        await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": {"type": "thinking_delta", "thinking": piece}})
                        output_tokens += 1
                    await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "signature_delta",
                                                                 "signature": block["signature"]}})
                else:
                    await send("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "tool_use", "id": block["id"],
                                                                         "name": block["name"], "input": {}}})
                    raw = json.dumps(block["input"])
                    cut = len(raw) // 2
                    for piece in ("", raw[:cut], raw[cut:]):
                        await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": {"type": "input_json_delta",
                                                                     "partial_json": piece}})
                    output_tokens += 1
                await send("content_block_stop", {"type": "content_block_stop", "index": index})
            if model == "truncated":
                await resp.write_eof()
                return resp
            await send("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                         "usage": {"output_tokens": output_tokens}})
            await send("message_stop", {"type": "message_stop"})
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled_streams += 1
            raise
        finally:
            self.active_streams -= 1
        return resp
