"""Hub (OpenAI chat format) <-> AWS Bedrock's Converse API: the translators, with no I/O.

`to_converse_request` builds a Converse body from scratch (Converse rejects unknown fields; the
model id goes in the URL, `model_path`):

- `system` and `developer` messages, wherever they appear, become the top-level `system` blocks.
- Consecutive messages of the same role are merged into one turn; `tool` messages become
  `toolResult` blocks of a user turn (placed before any user text). A conversation must start with
  a user turn: one that does not gets a "." user turn first. A final assistant turn (a prefill)
  loses its trailing whitespace, which the models reject.
- Text parts -> `text` blocks; a part with `cache_control` is followed by a `cachePoint` block (the
  Converse way of marking a cache prefix, in system prompts and messages). `image_url` parts:
  base64 data URLs -> `image` blocks with their format (png, jpeg, gif, webp); `s3://` URLs ->
  an `s3Location` source; http(s) URLs are refused (Converse does not fetch URLs). `file` parts
  with a data URL -> `document` blocks (pdf, csv, doc(x), xls(x), html, txt, md), named after the
  file name (reduced to the characters Converse allows) or `document-N`. Assistant `tool_calls` ->
  `toolUse` blocks. `reasoning_content` and message `name`s are not sent (reasoning cannot be
  replayed without the model's signature).
- `max_completion_tokens`, else `max_tokens`, else `max_tokens_by_model[model]` -> `maxTokens`
  (Converse has a per-model default, so it is optional); `temperature`, `top_p`, `stop` ->
  `inferenceConfig` (`temperature`, `topP`, `stopSequences`).
- `tools` -> `toolConfig.tools[].toolSpec` (`inputSchema.json`, `strict` kept); `tool_choice`
  auto/required/named -> `auto`/`any`/`tool`. Converse has no "none": with `none` the tools are not
  sent, unless the history holds tool calls (Converse then requires `toolConfig`), where they are
  sent without a choice.
- `response_format` json_schema / json_object -> a forced tool `json_response` with the requested
  schema (as for Anthropic; it works on every model with tool use, where Converse's native
  structured output works on a few); its call comes back as the message `content`, finish `stop`.
- `reasoning_effort` low/medium/high -> extended thinking where the model family has it: Claude
  (`additionalModelRequestFields.thinking` with a 1024/4096/16384 token budget, added to
  `maxTokens`; temperature and top_p are then omitted, as Claude requires) and Nova
  (`additionalModelRequestFields.reasoningConfig`). Other models: unsupported, see below.
- OpenAI parameters Converse lacks (`n` > 1, `logprobs`, `top_logprobs`, non-zero penalties, `seed`,
  `logit_bias`, legacy `functions`/`function_call`, `reasoning_effort` on a model without a known
  reasoning switch): a 400 naming the parameter, or dropped with `drop_unsupported: true`.
- OpenAI-only fields that ask nothing of the model (`stream_options`, `store`, `metadata`, `user`,
  `parallel_tool_calls`, `service_tier`, ...) and unknown client fields are not sent. Converse's
  own fields (`additionalModelRequestFields`, `additionalModelResponseFieldPaths`,
  `guardrailConfig`, `promptVariables`, `requestMetadata`, `performanceConfig`, `serviceTier`,
  `outputConfig`) are forwarded when the client sends them, unless the provider sets
  `forward_unknown_params: false` or lists them in `drop_params`.

Back (`from_converse_response`, `ConverseStreamConverter`): text -> `content`, `toolUse` ->
`tool_calls` (stream fragments numbered 0, 1, ... per tool call), reasoning text ->
`reasoning_content`. stopReason: end_turn, stop_sequence -> stop; max_tokens,
model_context_window_exceeded -> length; tool_use -> tool_calls; guardrail_intervened,
content_filtered -> content_filter. Usage: `prompt_tokens` counts all input (inputTokens +
cacheReadInputTokens + cacheWriteInputTokens, as OpenAI's includes cached input);
`prompt_tokens_details.cached_tokens` is the cache read, `cache_write_tokens` the cache write.
Errors (`bedrock_error`, `stream_exception`): AWS exception names -> the OpenAI status, type and
whether another attempt may succeed (throttling 429, not ready / unavailable 503, internal 500,
model timeout 504: retryable; validation 400, access denied 403, bad credentials 401: final).
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from typing import Any
from urllib.parse import quote

import orjson

from ..config import ProviderConfig
from ..errors import GatewayError, bad_request, redact_secrets
from .anthropic_convert import JSON_TOOL, uses_json_tool

__all__ = [
    "ConverseStreamConverter",
    "bedrock_error",
    "finish_reason",
    "from_converse_response",
    "from_converse_usage",
    "model_path",
    "stream_exception",
    "to_converse_request",
    "uses_json_tool",
]

_UNSUPPORTED = ("n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed", "logit_bias",
                "functions", "function_call")
_NATIVE = ("additionalModelRequestFields", "additionalModelResponseFieldPaths", "guardrailConfig", "promptVariables",
           "requestMetadata", "performanceConfig", "serviceTier", "outputConfig")
_THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_IMAGE_EXTENSIONS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(.*)$", re.DOTALL)
_NOT_IN_DOCUMENT_NAME = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# AWS exception name -> (status, OpenAI error type). Retryable: 429 and 5xx (GatewayError's default).
_ERRORS = {
    "ValidationException": (400, "invalid_request_error"),
    "AccessDeniedException": (403, "permission_error"),
    "ResourceNotFoundException": (404, "not_found_error"),
    "ThrottlingException": (429, "rate_limit_error"),
    "ServiceQuotaExceededException": (429, "rate_limit_error"),
    "ModelNotReadyException": (503, "service_unavailable_error"),
    "ServiceUnavailableException": (503, "service_unavailable_error"),
    "InternalServerException": (500, "api_error"),
    "InternalFailure": (500, "api_error"),
    "ModelTimeoutException": (504, "timeout_error"),
    "ModelErrorException": (502, "api_error"),
    "ModelStreamErrorException": (502, "api_error"),
    "UnrecognizedClientException": (401, "authentication_error"),
    "InvalidSignatureException": (401, "authentication_error"),
    "IncompleteSignatureException": (401, "authentication_error"),
    "MissingAuthenticationTokenException": (401, "authentication_error"),
    "ExpiredTokenException": (401, "authentication_error"),
    "InvalidClientTokenId": (401, "authentication_error"),
}
_ERRORS_LOWER = {name.lower(): name for name in _ERRORS}
_CONTEXT_TOO_LONG = re.compile(r"too long|too many (input )?tokens|context (length|window)|maximum context",
                               re.IGNORECASE)


def model_path(model: str) -> str:
    """The model id as one URL path segment: `:` and the `/` of ARNs percent-encoded."""
    return quote(model, safe="")


# ---------------------------------------------------------------------------------------------
# request: hub -> Converse


def _is_set(name: str, value: Any) -> bool:
    """Whether an unsupported parameter asks for something (defaults like n=1 or 0 penalties do not)."""
    if value is None or value is False:
        return False
    if name == "n":
        return bool(value != 1)
    if name in ("presence_penalty", "frequency_penalty", "top_logprobs"):
        return bool(value != 0)
    if name in ("logit_bias", "functions"):
        return bool(value)
    return True


def _unsupported(name: str, config: ProviderConfig, why: str = "") -> GatewayError:
    return bad_request(f"Parameter '{name}' is not supported by provider `{config.name}` (AWS Bedrock Converse"
                       f"{why}). Remove it, or set `drop_unsupported: true` on the provider to drop it silently.",
                       param=name, code="unsupported_parameter")


def _data_url(url: str, where: str) -> tuple[str, str]:
    match = _DATA_URL.match(url)
    if match is None:
        raise bad_request(f"Invalid data URL in '{where}': expected data:<media type>;base64,<data>.", param=where,
                          code="invalid_value")
    media_type, data = match.group(1).lower(), match.group(2).strip()
    try:
        binascii.a2b_base64(data[:64])  # a cheap sanity check; the upstream decodes the rest
    except binascii.Error as exc:
        raise bad_request(f"Invalid base64 data in '{where}'.", param=where, code="invalid_value") from exc
    return media_type, data


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    where = f"{where}.image_url.url"
    if not isinstance(url, str) or not url:
        raise bad_request(f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter")
    if url.startswith("data:"):
        media_type, data = _data_url(url, where)
        fmt = _IMAGE_FORMATS.get(media_type)
        if fmt is None:
            raise bad_request(f"Unsupported image type '{media_type}' in '{where}': Bedrock accepts "
                              f"{', '.join(sorted(set(_IMAGE_FORMATS)))}.", param=where, code="invalid_value")
        return {"image": {"format": fmt, "source": {"bytes": data}}}
    if url.startswith("s3://"):
        fmt = _IMAGE_EXTENSIONS.get(url.rpartition(".")[2].lower())
        if fmt is None:
            raise bad_request(f"Cannot tell the image format of '{where}' from its extension (png, jpeg, gif, "
                              "webp).", param=where, code="invalid_value")
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    raise bad_request(f"Image URL in '{where}' is not supported by the Bedrock provider: Converse takes images as "
                      "base64 data URLs or s3:// URIs, not http(s) URLs.", param=where, code="unsupported_content")


def _document_name(filename: Any, number: int) -> str:
    if isinstance(filename, str):
        stem = filename.rpartition(".")[0] or filename
        name = " ".join(_NOT_IN_DOCUMENT_NAME.sub(" ", stem).split())[:200]
        if name:
            return name
    return f"document-{number}"


def _file_block(part: dict[str, Any], where: str, counter: list[int]) -> dict[str, Any]:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if isinstance(data_url, str) and data_url.startswith("data:"):
        media_type, data = _data_url(data_url, f"{where}.file.file_data")
        fmt = _DOCUMENT_FORMATS.get(media_type)
        if fmt is not None:
            counter[0] += 1
            name = _document_name(file.get("filename") if isinstance(file, dict) else None, counter[0])
            return {"document": {"format": fmt, "name": name, "source": {"bytes": data}}}
    raise bad_request(f"Unsupported file in '{where}': the Bedrock provider takes documents (pdf, csv, doc, docx, "
                      "xls, xlsx, html, txt, md) as data URLs in 'file.file_data'.", param=where,
                      code="unsupported_content")


def _text_blocks(text: str, part: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": text}] if text else []
    if blocks and part is not None and isinstance(part.get("cache_control"), dict):
        blocks.append({"cachePoint": {"type": "default"}})
    return blocks


def _user_blocks(content: Any, where: str, counter: list[int]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return _text_blocks(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or ()):
        ptype = part.get("type")
        pwhere = f"{where}.content[{j}]"
        if ptype == "text":
            if isinstance(part.get("text"), str):
                blocks.extend(_text_blocks(part["text"], part))
        elif ptype == "image_url":
            blocks.append(_image_block(part, pwhere))
        elif ptype == "file":
            blocks.append(_file_block(part, pwhere, counter))
        else:
            raise bad_request(f"Content part type '{ptype}' in '{pwhere}' is not supported by the Bedrock provider.",
                              param=f"{pwhere}.type", code="unsupported_content")
    return blocks


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") in ("text", "refusal") and isinstance(p.get("text"),
                                                                                                   str))
    return ""


def _tool_result(message: dict[str, Any], where: str, counter: list[int]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        parts = [b for b in _user_blocks(content, where, counter) if "cachePoint" not in b]
    else:
        parts = [{"text": content}] if isinstance(content, str) and content else []
    if not parts:
        parts = [{"text": "(empty)"}]  # Converse wants content in every tool result
    return {"toolResult": {"toolUseId": message.get("tool_call_id") or "", "content": parts}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(_text_of(message.get("content")))
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            tool_input = None
        if not isinstance(tool_input, dict):
            param = f"{where}.tool_calls[{k}].function.arguments"
            raise bad_request(f"Invalid '{param}': Bedrock needs the arguments of a tool call to be a JSON object.",
                              param=param, code="invalid_value")
        blocks.append({"toolUse": {"toolUseId": call.get("id") or f"tooluse_sb{k}", "name": function.get("name", ""),
                                   "input": tool_input}})
    return blocks


def _system_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return _text_blocks(content)
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            blocks.extend(_text_blocks(part["text"], part))
    return blocks


def _messages(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(system blocks, Converse messages, whether the history holds tool blocks)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    counter = [0]  # documents numbered across the request (their names must differ)
    tool_blocks = False
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(_system_blocks(message.get("content")))
            continue
        if role == "tool":
            blocks, turn_role = [_tool_result(message, where, counter)], "user"
            tool_blocks = True
        elif role == "user":
            blocks, turn_role = _user_blocks(message.get("content"), where, counter), "user"
        elif role == "assistant":
            blocks, turn_role = _assistant_blocks(message, where), "assistant"
            tool_blocks = tool_blocks or any("toolUse" in b for b in blocks)
        else:
            raise bad_request(f"Messages with role '{role}' are not supported by the Bedrock provider; use 'tool' "
                              "messages.", param=f"{where}.role", code="unsupported_parameter")
        if not blocks:
            continue  # an empty turn (e.g. assistant content null without tool calls) is rejected upstream
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    for turn in turns:
        turn["content"].sort(key=lambda b: "toolResult" not in b)  # tool results first in their turn
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"text": "."}]})
    last = turns[-1]
    if last["role"] == "assistant" and "text" in last["content"][-1]:
        text = last["content"][-1]["text"].rstrip()  # a prefill must not end with whitespace
        if text:
            last["content"][-1]["text"] = text
        else:
            last["content"].pop()
            if not last["content"]:
                turns.pop()
    return system, turns, tool_blocks


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise bad_request(f"Tool type '{tool.get('type')}' in 'tools[{i}]' is not supported by the Bedrock "
                              "provider: only function tools.", param=f"tools[{i}].type", code="unsupported_parameter")
        function = tool["function"]
        schema = function.get("parameters")
        if not isinstance(schema, dict) or not schema:
            schema = {"type": "object", "properties": {}}
        spec: dict[str, Any] = {"name": function["name"], "inputSchema": {"json": schema}}
        if isinstance(function.get("description"), str) and function["description"]:
            spec["description"] = function["description"]
        if function.get("strict") is True:
            spec["strict"] = True
        tools.append({"toolSpec": spec})
    return tools


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    """The Converse toolChoice, None for the default (auto); "none" is returned as {"none": {}}."""
    if choice is None or choice == "auto":
        return None if choice is None else {"auto": {}}
    if choice == "none":
        return {"none": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return {"tool": {"name": name}}
    raise bad_request("Invalid 'tool_choice' for the Bedrock provider: expected 'auto', 'none', 'required' or "
                      "{'type': 'function', 'function': {'name': ...}}.", param="tool_choice", code="invalid_value")


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"toolSpec": {"name": JSON_TOOL, "description": "Give the final answer as a JSON object.",
                             "inputSchema": {"json": {"type": "object"}}}}
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise bad_request("Missing required parameter: 'response_format.json_schema.schema'.",
                          param="response_format.json_schema.schema", code="missing_required_parameter")
    if schema.get("type") != "object":
        raise bad_request("The Bedrock provider needs a JSON schema whose root is an object.",
                          param="response_format.json_schema.schema", code="invalid_value")
    description = "Give the final answer as JSON"
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        description += f" ({spec['name']}"
        if isinstance(spec.get("description"), str):
            description += f": {spec['description']}"
        description += ")"
    return {"toolSpec": {"name": JSON_TOOL, "description": description + ".", "inputSchema": {"json": schema}}}


def _max_tokens(body: dict[str, Any], model: str, config: ProviderConfig) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise bad_request(f"Invalid '{name}': must be at least 1.", param=name, code="invalid_value")
            return value
    return config.max_tokens_by_model.get(model)


def _reasoning_fields(effort: Any, model: str, config: ProviderConfig) -> tuple[dict[str, Any], int] | None:
    """(additionalModelRequestFields, thinking budget added to maxTokens) for `reasoning_effort`."""
    if effort in (None, "none", "minimal"):
        return None
    budget = _THINKING_BUDGETS.get(effort)
    if budget is None:
        raise bad_request(f"Invalid 'reasoning_effort' {effort!r} for the Bedrock provider: expected low, medium or "
                          "high.", param="reasoning_effort", code="invalid_value")
    if "anthropic.claude" in model:
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}, budget
    if "amazon.nova" in model:
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}, 0
    if config.drop_unsupported:
        return None
    raise _unsupported("reasoning_effort", config, f": no known reasoning switch for model `{model}`")


def to_converse_request(body: dict[str, Any], model: str, config: ProviderConfig) -> dict[str, Any]:
    """The Converse body for a hub chat request (see the module docstring for every rule)."""
    if config.drop_params:
        body = {k: v for k, v in body.items() if k not in config.drop_params}
    if not config.drop_unsupported:
        for name in _UNSUPPORTED:
            if name in body and _is_set(name, body[name]):
                raise _unsupported(name, config)
    system, messages, tool_history = _messages(body)
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    max_tokens = _max_tokens(body, model, config)
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if isinstance(body.get("temperature"), int | float) and not isinstance(body["temperature"], bool):
        inference["temperature"] = body["temperature"]
    if isinstance(body.get("top_p"), int | float) and not isinstance(body["top_p"], bool):
        inference["topP"] = body["top_p"]
    stop = body.get("stop")
    stops = [s for s in ([stop] if isinstance(stop, str) else list(stop or ())) if isinstance(s, str) and s]
    if stops:
        inference["stopSequences"] = stops

    tools = _tools(body)
    choice = _tool_choice(body.get("tool_choice")) if tools else None
    if choice is not None and "none" in choice:
        choice = None
        if not tool_history:
            tools = []  # Converse cannot be told not to call tools: do not offer them
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        if not tools:
            choice = {"tool": {"name": JSON_TOOL}}
        elif choice is None or "tool" not in choice:
            choice = {"any": {}}
        tools.append(json_tool)
    if tools:
        tool_config: dict[str, Any] = {"tools": tools}
        if choice is not None:
            tool_config["toolChoice"] = choice
        out["toolConfig"] = tool_config

    if config.forward_unknown_params:
        for name in _NATIVE:
            if name in body:
                out[name] = body[name]
    reasoning = _reasoning_fields(body.get("reasoning_effort"), model, config)
    if reasoning is not None:
        fields, budget = reasoning
        extra = out.get("additionalModelRequestFields")
        out["additionalModelRequestFields"] = {**fields, **(extra if isinstance(extra, dict) else {})}
        if budget:
            inference["maxTokens"] = inference.get("maxTokens", config.default_max_tokens) + budget
            inference.pop("temperature", None)  # Claude's thinking takes neither
            inference.pop("topP", None)
    if inference:
        out["inferenceConfig"] = inference
    return out


# ---------------------------------------------------------------------------------------------
# errors


def _error_name(raw: Any) -> str | None:
    """`ThrottlingException` from `ThrottlingException:http://...`, `com.amazon...#ThrottlingException`, or
    an event stream's `throttlingException`."""
    if not isinstance(raw, str) or not raw:
        return None
    name = raw.split(":", 1)[0].rpartition("#")[2].strip()
    return _ERRORS_LOWER.get(name.lower(), name) or None


def _aws_error(name: str | None, message: str, status: int | None, provider: str) -> GatewayError:
    mapped = _ERRORS.get(name or "")
    if mapped is not None:
        status, etype = mapped
    else:
        status = status if status is not None and 400 <= status <= 599 else 502
        etype = None
    code = name
    if status == 400 and _CONTEXT_TOO_LONG.search(message):
        code = "context_length_exceeded"  # so `fallback_on: [context_window]` recognises it
    if not message:
        message = f"Upstream provider `{provider}` returned {name or f'HTTP {status}'}"
    return GatewayError(status, message, etype, code=code)


def bedrock_error(status: int, headers: dict[str, str], body: Any, provider: str,
                  secrets: tuple[str, ...] = ()) -> GatewayError:
    """An AWS error response (`x-amzn-errortype` header, `{"message": ...}` body) as the gateway error."""
    name = _error_name(headers.get("x-amzn-errortype"))
    message = ""
    if isinstance(body, dict):
        name = name or _error_name(body.get("__type") or body.get("code"))
        raw = body.get("message") or body.get("Message")
        message = raw if isinstance(raw, str) else ""
    elif isinstance(body, str):
        message = body.strip()[:2000]
    err = _aws_error(name, redact_secrets(message, secrets), status, provider)
    return err


def stream_exception(exception_type: str | None, payload: Any, provider: str) -> GatewayError:
    """A mid-stream `:message-type: exception` event as the gateway error."""
    message = ""
    if isinstance(payload, dict):
        raw = payload.get("message") or payload.get("Message") or payload.get("originalMessage")
        message = raw if isinstance(raw, str) else ""
    err = _aws_error(_error_name(exception_type) or "ModelStreamErrorException", message, None, provider)
    err.message = f"Upstream provider `{provider}` failed mid-stream: {err.message}"
    return err


# ---------------------------------------------------------------------------------------------
# response: Converse -> hub


def finish_reason(stop_reason: Any, json_only: bool = False) -> str:
    if stop_reason == "tool_use" and json_only:
        return "stop"
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def from_converse_usage(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    read, write = count("cacheReadInputTokens"), count("cacheWriteInputTokens")
    prompt = count("inputTokens") + read + write
    completion = count("outputTokens")
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write}}


def _arguments(tool_input: Any) -> str:
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()


def completion_id(request_id: str | None) -> str:
    return f"chatcmpl-{request_id}" if request_id else "chatcmpl-" + secrets.token_hex(12)


def from_converse_response(resp: dict[str, Any], model: str, request_id: str | None,
                           json_tool: bool = False) -> dict[str, Any]:
    """A Converse response as a `chat.completion`. `json_tool`: the request used the JSON tool."""
    output = resp.get("output")
    message_in = output.get("message") if isinstance(output, dict) else None
    blocks = message_in.get("content") if isinstance(message_in, dict) else None
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    json_only = False
    for block in blocks or ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            if json_tool and use.get("name") == JSON_TOOL:
                texts = [_arguments(use.get("input"))]  # the JSON answer replaces any preamble
                json_only = True
            else:
                tool_calls.append({"id": use.get("toolUseId"), "type": "function",
                                   "function": {"name": use.get("name"), "arguments": _arguments(use.get("input"))}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None,
                               "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": completion_id(request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(resp.get("stopReason"), json_only and not tool_calls)}],
        "usage": from_converse_usage(resp.get("usage")),
    }


class ConverseStreamConverter:
    """ConverseStream events -> `chat.completion.chunk` dicts, one stream's state.

    `convert(event_type, payload)` returns the chunks of one event (possibly none) and raises
    `GatewayError` for an exception event. `done` is set by the `metadata` event, the last one;
    `stopped` by `messageStop` (a stream ending right after it is complete, without usage).
    """

    def __init__(self, provider: str, model: str, request_id: str | None, json_tool: bool = False) -> None:
        self.provider = provider
        self.model = model
        self.json_tool = json_tool
        self.id = completion_id(request_id)
        self.created = int(time.time())
        self.done = False
        self.stopped = False
        self._started = False
        self._tool_index: dict[int, int] = {}  # Converse block index -> OpenAI tool call index
        self._json_blocks: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}

    def exception(self, exception_type: str | None, payload: Any) -> GatewayError:
        return stream_exception(exception_type, payload, self.provider)

    def convert(self, event_type: str | None, payload: Any) -> list[dict[str, Any]]:
        if not isinstance(payload, dict):
            return []
        if event_type == "messageStart":
            self._started = True
            return [self._chunk({"role": "assistant", "content": ""})]
        if not self._started and event_type in ("contentBlockStart", "contentBlockDelta", "messageStop"):
            raise GatewayError(502, f"Upstream provider `{self.provider}` sent `{event_type}` before messageStart.",
                               "api_error", code="upstream_invalid_response")
        if event_type == "contentBlockDelta":
            return self._delta(payload)
        if event_type == "contentBlockStart":
            return self._block_start(payload)
        if event_type == "messageStop":
            self.stopped = True
            json_only = bool(self._json_blocks) and not self._tool_index
            return [self._chunk({}, finish_reason(payload.get("stopReason"), json_only))]
        if event_type == "metadata":
            self.done = True
            return [{"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "choices": [], "usage": from_converse_usage(payload.get("usage"))}]
        return []  # contentBlockStop, and event types added later

    def _block_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        start = payload.get("start") or {}
        index = payload.get("contentBlockIndex")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict) or not isinstance(index, int):
            return []
        if self.json_tool and use.get("name") == JSON_TOOL:
            self._json_blocks.add(index)
            return []
        tool_index = len(self._tool_index)
        self._tool_index[index] = tool_index
        return [self._chunk({"tool_calls": [{"index": tool_index, "id": use.get("toolUseId"), "type": "function",
                                             "function": {"name": use.get("name"), "arguments": ""}}]})]

    def _delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        delta = payload.get("delta") or {}
        index = payload.get("contentBlockIndex")
        if not isinstance(delta, dict):
            return []
        text = delta.get("text")
        if isinstance(text, str):
            return [self._chunk({"content": text})] if text else []
        use = delta.get("toolUse")
        if isinstance(use, dict):
            fragment = use.get("input")
            if not isinstance(fragment, str) or not fragment:
                return []
            if index in self._json_blocks:
                return [self._chunk({"content": fragment})]
            if isinstance(index, int) and index in self._tool_index:
                return [self._chunk({"tool_calls": [{"index": self._tool_index[index],
                                                     "function": {"arguments": fragment}}]})]
            return []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str) and reasoning["text"]:
            return [self._chunk({"reasoning_content": reasoning["text"]})]
        return []  # reasoning signatures, redacted reasoning, citations
