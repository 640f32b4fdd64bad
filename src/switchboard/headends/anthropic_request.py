"""Anthropic Messages request -> hub: validation of a `/v1/messages` body and its translation into an
OpenAI chat completions body (the hub), done once.

- `system` (string or text blocks) becomes one leading system message; a `role: system` turn inside
  `messages` (Claude Code sends them) becomes a system message at its position. A system block that is
  Claude Code's billing-attribution line (`x-anthropic-billing-header: ...`, different in every
  conversation) is dropped: it would keep an upstream's prefix cache from sharing the prompt.
- User turns: text and image blocks become content parts (base64 images as data URLs); `tool_result`
  blocks become `role: tool` messages placed first, as OpenAI needs them right after the assistant's
  `tool_calls`; images inside a tool result follow in a user message (tool messages carry text only).
- Assistant turns: text joins into `content`, `tool_use` blocks become `tool_calls` (input as JSON
  arguments). `thinking` blocks are dropped: OpenAI-format upstreams cannot take them back.
- Consecutive turns of the same role are accepted, as Anthropic merges them.
- `max_tokens` -> `max_completion_tokens`, `stop_sequences` -> `stop`, `metadata.user_id` -> `user`,
  `top_k` rides along as an extra field, tools/tool_choice map to their function equivalents,
  `output_config.format` (JSON schema) -> `response_format`.
- Tools marked `defer_loading: true` stay hidden, as Anthropic keeps them, until a `tool_reference`
  block in a tool result names them (a tool search found them): then they are offered.
- Reasoning: `output_config.effort` low/medium/high (max -> high) -> `reasoning_effort`; without an
  effort, `thinking: {type: enabled, budget_tokens: N}` -> low (N < 4096), medium (< 16384) or high.
  `adaptive` thinking alone leaves the model's default.
Fields this gateway does not know (betas, `thinking` itself, `context_management`, `service_tier`...)
are ignored, not forwarded: an OpenAI-format upstream would reject them.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import GatewayError, bad_request, unencodable_request
from ..hub import ChatRequest
from ..openai_fields import INT64_MAX
from .validation import FieldSpec, check_spec, model_name_problem

__all__ = ["COUNT_TOKENS_DROPPED", "parse_messages_request", "to_hub_body"]

_TOP_SPEC = FieldSpec({
    "model": "string", "max_tokens": "integer", "messages": "array", "system": "string|array",
    "metadata": "object|null", "stop_sequences": "array|null", "stream": "boolean|null",
    "temperature": "number|null", "top_p": "number|null", "top_k": "integer|null",
    "tools": "array|null", "tool_choice": "object|null", "output_config": "object|null",
    "thinking": "object|null",
}, {"max_tokens": (1, INT64_MAX), "top_k": (0, INT64_MAX)})  # integral floats become ints, sizes stay in 64 bits

# Fields of a Messages request that the count_tokens endpoint does not take.
COUNT_TOKENS_DROPPED = ("max_tokens", "stream", "metadata", "stop_sequences", "temperature", "top_p", "top_k",
                        "service_tier", "container")

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
BILLING_PREFIX = "x-anthropic-billing-header:"
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}


def _missing(param: str) -> GatewayError:
    return bad_request(f"{param}: Field required", param=param, code="missing_required_parameter")


def _invalid(param: str, message: str) -> GatewayError:
    return bad_request(f"{param}: {message}", param=param, code="invalid_value")


def _require(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in obj:
        raise _missing(f"{where}.{name}")
    value = obj[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise bad_request(f"{where}.{name}: Input should be a valid {_KIND_NAMES.get(kind, kind.__name__)}",
                          param=f"{where}.{name}", code="invalid_type")
    return value


_KIND_NAMES = {str: "string", dict: "dictionary", list: "list", int: "integer", bool: "boolean"}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A content field as a list of typed blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where}: Input should be a valid string or list of content blocks", param=where,
                          code="invalid_type")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_request(f"{where}.{i}: each content block must be an object with a string 'type'",
                              param=f"{where}.{i}", code="invalid_type")
    return content


def _json_text(value: Any, where: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # nested deeper than the encoder writes
        raise unencodable_request(value, exc, where) from exc


def _text(block: dict[str, Any], where: str) -> str:
    return str(_require(block, "text", str, where))


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _require(block, "source", dict, where)
    kind = source.get("type")
    if kind == "base64":
        media = _require(source, "media_type", str, f"{where}.source")
        if media not in _IMAGE_TYPES:
            raise _invalid(f"{where}.source.media_type",
                           f"Input should be {', '.join(repr(t) for t in _IMAGE_TYPES)}")
        data = _require(source, "data", str, f"{where}.source")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = _require(source, "url", str, f"{where}.source")
    else:
        raise _invalid(f"{where}.source.type", f"image source type {kind!r} is not supported here "
                       "(use 'base64' or 'url')")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = _require(block, "source", dict, where)
    kind = source.get("type")
    if kind == "text":
        return {"type": "text", "text": _require(source, "data", str, f"{where}.source")}
    if kind == "base64" and source.get("media_type") == "application/pdf":
        data = _require(source, "data", str, f"{where}.source")
        name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        return {"type": "file", "file": {"filename": name, "file_data": f"data:application/pdf;base64,{data}"}}
    raise _invalid(f"{where}.source", "only base64 PDF and plain-text document sources are supported here")


def _user_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": _text(block, where)}
    if kind == "image":
        return _image_part(block, where)
    if kind == "document":
        return _document_part(block, where)
    raise _invalid(f"{where}.type", f"content block type {kind!r} is not supported in a user turn by this gateway")


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result block -> (the tool message, image parts that must travel in a user message)."""
    call_id = _require(block, "tool_use_id", str, where)
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if "content" in block and block["content"] is not None:
        for i, part in enumerate(_blocks(block["content"], f"{where}.content")):
            if part["type"] == "text":
                texts.append(_text(part, f"{where}.content.{i}"))
            elif part["type"] == "image":
                images.append(_image_part(part, f"{where}.content.{i}"))
            else:
                texts.append(_json_text(part, f"{where}.content.{i}"))  # e.g. search results: keep them readable
    text = "\n".join(texts)
    if block.get("is_error") is True:
        # OpenAI has no error flag on tool results; the model must still see that the call failed.
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user_messages(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        here = f"{where}.{i}"
        if block["type"] == "tool_result":
            message, images = _tool_result(block, here)
            tool_messages.append(message)
            if images:
                parts.append({"type": "text", "text": f"Images returned by tool call {message['tool_call_id']}:"})
                parts.extend(images)
        else:
            parts.append(_user_part(block, here))
    out = tool_messages
    if parts:
        if all(p["type"] == "text" for p in parts):
            # Plain strings reach every OpenAI-compatible server, even those without content parts.
            out.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_message(blocks: list[dict[str, Any]], where: str) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        here = f"{where}.{i}"
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block, here))
        elif kind == "tool_use":
            call_id = _require(block, "id", str, here)
            name = _require(block, "name", str, here)
            arguments = _require(block, "input", dict, here)
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": name, "arguments": _json_text(arguments, f"{here}.input")}})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _invalid(f"{here}.type", f"content block type {kind!r} is not supported in an assistant turn "
                           "by this gateway")
    text = "".join(texts)
    if not text and not calls:
        return None  # an empty prefill, or thinking only
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system_message(system: Any, where: str = "system") -> dict[str, Any] | None:
    """A system prompt (string or text blocks) as one system message; None when empty."""
    if isinstance(system, str):
        text = "" if system.startswith(BILLING_PREFIX) else system
        return {"role": "system", "content": text} if text else None
    texts = []
    for i, block in enumerate(_blocks(system, where)):
        if block["type"] != "text":
            raise _invalid(f"{where}.{i}.type", "system blocks must be of type 'text'")
        text = _text(block, f"{where}.{i}")
        if not text.startswith(BILLING_PREFIX):
            texts.append(text)
    return {"role": "system", "content": "\n".join(texts)} if texts else None


def _referenced_tools(messages: list[Any]) -> set[str]:
    """Names of the tools that `tool_reference` blocks in tool results load (Anthropic's tool search)."""
    names: set[str] = set()
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            inner = block.get("content")
            for part in inner if isinstance(inner, list) else ():
                if isinstance(part, dict) and part.get("type") == "tool_reference" \
                        and isinstance(part.get("tool_name"), str):
                    names.add(part["tool_name"])
    return names


def _tools(tools: list[Any], messages: list[Any]) -> list[dict[str, Any]]:
    out = []
    loaded: set[str] | None = None
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise bad_request(f"{where}: Input should be an object", param=where, code="invalid_type")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _invalid(f"{where}.type", f"server tool {kind!r} is not supported by this gateway; "
                           "only custom tools (name, description, input_schema) are")
        name = _require(tool, "name", str, where)
        schema = _require(tool, "input_schema", dict, where)
        if tool.get("defer_loading") is True:
            if loaded is None:
                loaded = _referenced_tools(messages)
            if name not in loaded:
                continue  # hidden until a tool search names it
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any], body: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool":
        name = _require(choice, "name", str, "tool_choice")
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    if choice.get("disable_parallel_tool_use") is True and body.get("tools"):
        body["parallel_tool_calls"] = False


def _check_top_level(raw: dict[str, Any], require_max_tokens: bool) -> None:
    if "model" not in raw:
        raise _missing("model")
    if require_max_tokens and "max_tokens" not in raw:
        raise _missing("max_tokens")
    if "messages" not in raw:
        raise _missing("messages")
    check_spec(raw, _TOP_SPEC)
    if not raw["model"]:
        raise _invalid("model", "must be a non-empty string")
    model = raw["model"]
    if not (model.isascii() and model.isprintable()) and (problem := model_name_problem(model)) is not None:
        raise _invalid("model", problem)
    stops = raw.get("stop_sequences")
    if stops is not None and not all(isinstance(s, str) for s in stops):
        raise bad_request("stop_sequences: Input should be a list of strings", param="stop_sequences",
                          code="invalid_type")


def to_hub_body(raw: dict[str, Any], require_max_tokens: bool = True) -> dict[str, Any]:
    """Validate an Anthropic Messages body and return the equivalent OpenAI chat body."""
    _check_top_level(raw, require_max_tokens)
    messages: list[dict[str, Any]] = []
    if (system := _system_message(raw.get("system", ""))) is not None:
        messages.append(system)
    if not raw["messages"]:
        raise _invalid("messages", "at least one message is required")
    for i, message in enumerate(raw["messages"]):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise bad_request(f"{where}: Input should be an object", param=where, code="invalid_type")
        role = message.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in ("user", "assistant", "system"):
            raise _invalid(f"{where}.role", "Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise _missing(f"{where}.content")
        if role == "system":
            if (system := _system_message(message["content"], f"{where}.content")) is not None:
                messages.append(system)
            continue
        blocks = _blocks(message["content"], f"{where}.content")
        last_assistant = role == "assistant" and i == len(raw["messages"]) - 1
        if not last_assistant and (not blocks or blocks == [{"type": "text", "text": ""}]):
            raise _invalid(f"{where}.content", "all messages must have non-empty content except for the optional "
                           "final assistant message")
        if role == "user":
            messages.extend(_user_messages(blocks, f"{where}.content"))
        elif (assistant := _assistant_message(blocks, f"{where}.content")) is not None:
            messages.append(assistant)
    body: dict[str, Any] = {"model": raw["model"], "messages": messages}
    if "max_tokens" in raw:
        body["max_completion_tokens"] = raw["max_tokens"]
    for name in ("temperature", "top_p", "top_k"):
        if raw.get(name) is not None:
            body[name] = raw[name]
    if raw.get("stop_sequences"):
        body["stop"] = list(raw["stop_sequences"])
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        body["user"] = metadata["user_id"]
    if raw.get("tools"):
        if tools := _tools(raw["tools"], raw["messages"]):
            body["tools"] = tools
    if raw.get("tool_choice") is not None:
        _tool_choice(raw["tool_choice"], body)
        if "tools" not in body and raw.get("tools"):
            body.pop("tool_choice", None)  # every tool was deferred: OpenAI rejects a choice without tools
    _output_format(raw.get("output_config"), body)
    _reasoning(raw.get("output_config"), raw.get("thinking"), body)
    return body


def _reasoning(config: dict[str, Any] | None, thinking: dict[str, Any] | None, body: dict[str, Any]) -> None:
    """Anthropic's effort and thinking -> OpenAI's `reasoning_effort` (unknown values are ignored:
    Anthropic adds levels, and a reasoning hint is never worth a 400)."""
    effort = (config or {}).get("effort")
    if isinstance(effort, str) and effort in _EFFORTS:
        body["reasoning_effort"] = _EFFORTS[effort]
        return
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            body["reasoning_effort"] = "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _output_format(config: dict[str, Any] | None, body: dict[str, Any]) -> None:
    """Anthropic's structured output (`output_config.format`) -> OpenAI's `response_format`."""
    fmt = (config or {}).get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _invalid("output_config.format.type", "Input should be 'json_schema'")
    schema = _require(fmt, "schema", dict, "output_config.format")
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def parse_messages_request(raw: dict[str, Any]) -> ChatRequest:
    body = to_hub_body(raw)
    stream = raw.get("stream") is True
    if stream:
        # Always ask for usage: message_delta must carry the real output token count.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return ChatRequest(body=body, model=body["model"], stream=stream, include_usage=stream)
