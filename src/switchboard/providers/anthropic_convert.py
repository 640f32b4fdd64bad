"""Hub (OpenAI chat format) <-> Anthropic Messages API: the translators, with no I/O.

`to_anthropic_request` builds a Messages body from scratch (the API rejects unknown top-level
fields, so nothing is copied blindly):

- `system` and `developer` messages, wherever they appear, become the top-level `system` blocks.
- Consecutive messages of the same role are merged into one turn; `tool` messages become
  `tool_result` blocks of a user turn (several results in one turn, placed before any user text).
- Text parts -> text blocks (`cache_control` on a part is kept); `image_url` parts: data URLs ->
  base64 source with their media type, http(s) URLs -> url source; `file` parts with a PDF data URL
  -> document blocks. Assistant `tool_calls` -> `tool_use` blocks. `reasoning_content` and message
  `name`s are dropped (thinking cannot be replayed without Anthropic's signature).
- The conversation must start with a user turn: a history that starts with an assistant turn, or
  has only system messages, gets a "." user turn first (as other gateways do).
- `max_tokens` is required upstream: `max_completion_tokens`, else `max_tokens`, else the
  provider's `max_tokens_by_model[model]`, else its `default_max_tokens`.
- `stop` -> `stop_sequences`; `temperature` (clamped to Anthropic's 0..1) and `top_p`; `user` (a
  string) or else `safety_identifier` -> `metadata.user_id`; tools -> `input_schema`;
  tool_choice auto/none/required/named -> auto/none/any/tool; `parallel_tool_calls: false` ->
  `disable_parallel_tool_use`.
- `reasoning_effort` low/medium/high -> extended thinking with a 1024/4096/16384 token budget added
  on top of `max_tokens` (so the client's limit still bounds the visible answer); temperature and
  top_p are then omitted, as the API requires. Known limits, relayed as Anthropic's 400: thinking
  cannot be combined with a forced tool choice (required, named, json_schema), and a tool-use
  history cannot be replayed with thinking on (its signed thinking blocks are not in OpenAI's format).
- `response_format` json_schema (and json_object, with a free-form object schema) -> a forced tool
  named `json_response` whose input schema is the requested one. We chose the forced tool over
  Anthropic's native structured output because it works on every Claude model and API version.
  The tool call comes back as the message `content` (JSON text) with finish_reason `stop`. When the
  client also sends tools, `json_response` is added to them and tool_choice becomes `any` (unless a
  specific tool was named), so the model either calls a tool or answers in JSON.
- OpenAI parameters Anthropic lacks (`n` > 1, `logprobs`, `top_logprobs`, non-zero penalties,
  `seed`, `logit_bias`, legacy `functions`/`function_call`): a 400 naming the parameter, or
  silently dropped when the provider sets `drop_unsupported: true`.
- Harmless OpenAI-only fields (`stream_options`, `store`, `metadata`, `service_tier`,
  `prompt_cache_key`, `verbosity`, `modalities`, `prediction`, ...) and unknown client fields
  (Vapi's `call`, object `user`s...) are not forwarded. The Anthropic-native extras `top_k`,
  `thinking`, `context_management`, `container` and `mcp_servers` are forwarded when the client
  sends them, unless the provider sets `forward_unknown_params: false` or lists them in `drop_params`.

Back (`from_anthropic_response`, `AnthropicStreamConverter`): text blocks -> `content`, `tool_use`
-> `tool_calls` (stream fragments carry index 0, 1, ... per tool call, id/type/name only in the
first), thinking -> `reasoning_content`. stop_reason: end_turn, stop_sequence, pause_turn ->
stop; max_tokens, model_context_window_exceeded -> length; tool_use -> tool_calls; refusal ->
content_filter. Usage: `prompt_tokens` counts all input, cached included (input_tokens +
cache_read_input_tokens + cache_creation_input_tokens), as OpenAI's does;
`prompt_tokens_details.cached_tokens` is the cache read and `cache_write_tokens` the cache creation.
Errors: Anthropic error types -> the OpenAI status and type (`anthropic_error`), 529 overloaded ->
503 `overloaded_error`, retryable.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..config import ProviderConfig
from ..errors import GatewayError, bad_request, redact_secrets
from .chat_convert import (
    JSON_TOOL,
    THINKING_BUDGETS,
    UNSUPPORTED_PARAMS,
    ChunkBuilder,
    asks_for,
    chat_completion,
    data_url,
    file_data,
    finish_reasons,
    hub_usage,
    json_tool_schema,
    requested_max_tokens,
    text_of,
    tool_arguments,
    tool_call_input,
    tool_choice_kind,
    trim_prefill,
    unsupported_parameter,
    unsupported_part,
    unsupported_role,
    uses_json_tool,
)

__all__ = [
    "JSON_TOOL",
    "AnthropicStreamConverter",
    "anthropic_error",
    "finish_reason",
    "from_anthropic_response",
    "from_anthropic_usage",
    "to_anthropic_request",
    "uses_json_tool",
]

_EXTRAS = ("top_k", "thinking", "context_management", "container", "mcp_servers")
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error type -> (status, OpenAI error type).
_ERRORS = {
    "invalid_request_error": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "billing_error": (402, "billing_error"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "not_found_error"),
    "request_too_large": (413, "invalid_request_error"),
    "rate_limit_error": (429, "rate_limit_error"),
    "api_error": (500, "api_error"),
    "timeout_error": (504, "timeout_error"),
    "overloaded_error": (503, "overloaded_error"),
}


# ---------------------------------------------------------------------------------------------
# request: hub -> Anthropic


def _check_unsupported(body: dict[str, Any], config: ProviderConfig) -> None:
    if config.drop_unsupported:
        return
    for name in UNSUPPORTED_PARAMS:
        if name in body and asks_for(name, body[name]):
            raise unsupported_parameter(name, config.name, "Anthropic Messages API")


def _text_block(text: str, part: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    where = f"{where}.image_url"
    if not isinstance(url, str) or not url:
        raise bad_request(f"Missing required parameter: '{where}.url'.", param=f"{where}.url",
                          code="missing_required_parameter")
    if url.startswith("data:"):
        media_type, data = data_url(url, f"{where}.url")
        if media_type not in _IMAGE_TYPES:
            raise bad_request(f"Unsupported image type '{media_type}' in '{where}.url': Anthropic accepts "
                              f"{', '.join(_IMAGE_TYPES)}.", param=f"{where}.url", code="invalid_value")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request(f"Invalid image URL in '{where}.url': expected an http(s) or data URL.", param=f"{where}.url",
                      code="invalid_value")


def _file_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    found = file_data(part, where)
    if found is not None and found[0] == "application/pdf":
        return {"type": "document", "source": {"type": "base64", "media_type": found[0], "data": found[1]}}
    raise bad_request(f"Unsupported file in '{where}': the Anthropic provider takes PDF files as data URLs in "
                      "'file.file_data'.", param=where, code="unsupported_content")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or ()):
        ptype = part.get("type")
        pwhere = f"{where}.content[{j}]"
        if ptype == "text":
            if isinstance(part.get("text"), str) and part["text"]:
                blocks.append(_text_block(part["text"], part))
        elif ptype == "image_url":
            blocks.append(_image_block(part, pwhere))
        elif ptype == "file":
            blocks.append(_file_block(part, pwhere))
        else:
            raise unsupported_part(ptype, pwhere, "Anthropic")
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    content = message.get("content")
    if isinstance(content, list):
        parts = _user_blocks(content, where)
        if parts:
            block["content"] = parts
    elif isinstance(content, str) and content:
        block["content"] = content
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text:
        blocks.append(_text_block(text))
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        tool_input = tool_call_input(function, f"{where}.tool_calls[{k}].function.arguments", "Anthropic")
        blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_sb{k}", "name": function.get("name", ""),
                       "input": tool_input})
    return blocks


def _system_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    return [_text_block(p["text"], p) for p in content or ()
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) and p["text"]]


def _messages(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, Anthropic messages) from the OpenAI messages."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(_system_blocks(message.get("content")))
            continue
        if role == "tool":
            blocks, turn_role = [_tool_result(message, where)], "user"
        elif role == "user":
            blocks, turn_role = _user_blocks(message.get("content"), where), "user"
        elif role == "assistant":
            blocks, turn_role = _assistant_blocks(message, where), "assistant"
        else:
            raise unsupported_role(role, where, "Anthropic")
        if not blocks:
            continue  # an empty turn (e.g. assistant content null without tool calls) is rejected upstream
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    for turn in turns:
        # The API wants a turn's tool results before anything else in it.
        turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [_text_block(".")]})
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        trim_prefill(turns)
    for turn in turns:
        # Plain single-text turns as strings keep the upstream request (and logs) readable.
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and "cache_control" not in content[0]:
            turn["content"] = content[0]["text"]
    return system, turns


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict) or not isinstance(function.get("name"),
                                                                                               str):
            raise bad_request(f"Tool type '{tool.get('type')}' in 'tools[{i}]' is not supported by the Anthropic "
                              "provider; only function tools are.", param=f"tools[{i}]", code="unsupported_parameter")
        schema = function.get("parameters")
        if not isinstance(schema, dict) or not schema:
            schema = {"type": "object", "properties": {}}
        elif "type" not in schema:
            schema = {"type": "object", **schema}
        out: dict[str, Any] = {"name": function["name"], "input_schema": schema}
        if isinstance(function.get("description"), str) and function["description"]:
            out["description"] = function["description"]
        tools.append(out)
    return tools


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    kind = tool_choice_kind(choice, "Anthropic")
    if kind is None:
        return None
    return {"type": kind[0]} if kind[1] is None else {"type": "tool", "name": kind[1]}


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    found = json_tool_schema(response_format, "Anthropic")
    if found is None:
        return None
    return {"name": JSON_TOOL, "description": found[0], "input_schema": found[1]}


def _max_tokens(body: dict[str, Any], model: str, config: ProviderConfig) -> int:
    requested = requested_max_tokens(body)
    return config.max_tokens_by_model.get(model, config.default_max_tokens) if requested is None else requested


def to_anthropic_request(body: dict[str, Any], model: str, config: ProviderConfig,
                         stream: bool = False) -> dict[str, Any]:
    """The Messages API body for a hub chat request (see the module docstring for every rule)."""
    if config.drop_params:
        body = {k: v for k, v in body.items() if k not in config.drop_params}
    _check_unsupported(body, config)
    system, messages = _messages(body)
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": _max_tokens(body, model, config)}
    if system:
        out["system"] = system
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    stops = [s for s in stops if s]
    if stops:
        out["stop_sequences"] = stops
    if isinstance(body.get("temperature"), int | float):
        out["temperature"] = min(max(float(body["temperature"]), 0.0), 1.0)
    if isinstance(body.get("top_p"), int | float):
        out["top_p"] = body["top_p"]
    user = body.get("user") if isinstance(body.get("user"), str) else body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}

    tools = _tools(body)
    choice = _tool_choice(body.get("tool_choice")) if tools else None
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        if not tools or (choice is not None and choice["type"] == "none"):
            tools, choice = [], {"type": "tool", "name": JSON_TOOL}
        elif choice is None or choice["type"] != "tool":
            choice = {"type": "any"}
        tools.append(json_tool)
    if tools:
        out["tools"] = tools
        if body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            out["tool_choice"] = choice

    if config.forward_unknown_params:
        for name in _EXTRAS:
            if name in body and name not in config.drop_params:
                out[name] = body[name]
    budget = THINKING_BUDGETS.get(body.get("reasoning_effort") or "")
    if budget is not None and "thinking" not in out:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        out["max_tokens"] += budget
    if isinstance(out.get("thinking"), dict) and out["thinking"].get("type") == "enabled":
        out.pop("temperature", None)
        out.pop("top_p", None)
    if stream:
        out["stream"] = True
    return out


# ---------------------------------------------------------------------------------------------
# response: Anthropic -> hub


def anthropic_error(body: Any, provider: str, status: int | None = None, secrets: tuple[str, ...] = (),
                    headers: dict[str, str] | None = None) -> GatewayError:
    """An Anthropic error as the gateway error with OpenAI's status and type.

    `status` is the HTTP status when there was one (it wins, except 529 -> 503); a stream `error`
    event has none, so its status comes from the error type.
    """
    err = body.get("error") if isinstance(body, dict) else None
    etype = err.get("type") if isinstance(err, dict) and isinstance(err.get("type"), str) else None
    message = err.get("message") if isinstance(err, dict) and isinstance(err.get("message"), str) else None
    if status == 529:
        etype = "overloaded_error"
    type_status, mapped_type = _ERRORS.get(etype or "", (500, None))
    if status is None:
        status = type_status
    elif etype == "overloaded_error" or status == 529:
        status = 503
    elif not 400 <= status <= 599:
        status = 502
    if not message:
        message = body.strip()[:2000] if isinstance(body, str) and body.strip() else \
            f"Upstream provider `{provider}` returned HTTP {status}"
    out_headers = {k: v for k, v in (headers or {}).items() if k.lower() in ("retry-after", "retry-after-ms")}
    return GatewayError(status, redact_secrets(message, secrets), mapped_type or etype, headers=out_headers,
                        code=etype if etype == "overloaded_error" else None)


finish_reason = finish_reasons(_FINISH)


def from_anthropic_usage(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    return hub_usage(count("input_tokens"), count("output_tokens"), count("cache_read_input_tokens"),
                     count("cache_creation_input_tokens"))


def from_anthropic_response(resp: dict[str, Any], json_tool: bool = False) -> dict[str, Any]:
    """A Messages API response as a `chat.completion`. `json_tool`: the request used the JSON tool."""
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    json_only = False
    for block in resp.get("content") or ():
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif btype == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif btype == "tool_use" and json_tool and block.get("name") == JSON_TOOL:
            texts = [tool_arguments(block.get("input"))]  # the JSON answer replaces any preamble
            json_only = True
        elif btype == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": tool_arguments(block.get("input"))}})
    return chat_completion(resp.get("id") or "msg_unknown", resp.get("model") or "", texts, thinking, tool_calls,
                           finish_reason(resp.get("stop_reason"), json_only and not tool_calls),
                           from_anthropic_usage(resp.get("usage")))


class AnthropicStreamConverter(ChunkBuilder):
    """Anthropic stream events -> `chat.completion.chunk` dicts, one stream's state.

    `convert(event, data)` fits `SSEChunkStream`: it returns the chunks for one event (or None),
    raises `StopAsyncIteration` at `message_stop` and `GatewayError` on an `error` event. The id and
    model come with `message_start`.
    """

    def __init__(self, provider: str, json_tool: bool = False) -> None:
        super().__init__(provider, "msg_unknown", "", json_tool)
        self._usage: dict[str, Any] = {}
        self._started = False

    def convert(self, event: str | None, data: str) -> dict[str, Any] | list[dict[str, Any]] | None:
        obj = orjson.loads(data)
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type") or event
        if kind == "error":
            err = anthropic_error(obj, self.provider)
            err.message = f"Upstream provider `{self.provider}` failed mid-stream: {err.message}"
            raise err
        if kind == "message_start":
            message = obj.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self._usage = dict(message.get("usage") or {})
            self._started = True
            return self._chunk({"role": "assistant", "content": ""})
        if not self._started:
            raise GatewayError(502, f"Upstream provider `{self.provider}` sent `{kind}` before message_start.",
                               "api_error", code="upstream_invalid_response")
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_delta":
            return self._block_delta(obj)
        if kind == "message_delta":
            delta = obj.get("delta") or {}
            # message_delta's usage is cumulative and may restate the input counts.
            self._usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
            return [self._chunk({}, finish_reason(delta.get("stop_reason"), self._json_only())),
                    self._usage_chunk(from_anthropic_usage(self._usage))]
        if kind == "message_stop":
            raise StopAsyncIteration
        return None  # ping, content_block_stop, and event types added later

    def _block_start(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        block = obj.get("content_block") or {}
        index = obj.get("index")
        btype = block.get("type")
        if btype == "tool_use" and isinstance(index, int):
            return self._tool_start(index, block.get("id"), block.get("name"))
        if btype == "text" and block.get("text"):
            return self._chunk({"content": block["text"]})
        if btype == "thinking" and block.get("thinking"):
            return self._chunk({"reasoning_content": block["thinking"]})
        return None

    def _block_delta(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        delta = obj.get("delta") or {}
        index = obj.get("index")
        dtype = delta.get("type")
        if dtype == "text_delta" and delta.get("text"):
            return self._chunk({"content": delta["text"]})
        if dtype == "thinking_delta" and delta.get("thinking"):
            return self._chunk({"reasoning_content": delta["thinking"]})
        if dtype == "input_json_delta" and delta.get("partial_json"):
            if index in self._json_blocks:
                return self._chunk({"content": delta["partial_json"]})
            if index in self._tool_index:
                return self._chunk({"tool_calls": [{"index": self._tool_index[index],
                                                    "function": {"arguments": delta["partial_json"]}}]})
        return None  # signature_delta, citations_delta, empty fragments
