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

import re
import secrets
from typing import Any
from urllib.parse import quote

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

_NATIVE = ("additionalModelRequestFields", "additionalModelResponseFieldPaths", "guardrailConfig", "promptVariables",
           "requestMetadata", "performanceConfig", "serviceTier", "outputConfig")
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_IMAGE_EXTENSIONS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}
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


def _unsupported(name: str, config: ProviderConfig, why: str = "") -> GatewayError:
    return unsupported_parameter(name, config.name, f"AWS Bedrock Converse{why}")


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    where = f"{where}.image_url.url"
    if not isinstance(url, str) or not url:
        raise bad_request(f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter")
    if url.startswith("data:"):
        media_type, data = data_url(url, where)
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
    found = file_data(part, where)
    fmt = _DOCUMENT_FORMATS.get(found[0]) if found is not None else None
    if found is not None and fmt is not None:
        counter[0] += 1
        name = _document_name(part["file"].get("filename"), counter[0])
        return {"document": {"format": fmt, "name": name, "source": {"bytes": found[1]}}}
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
            raise unsupported_part(ptype, pwhere, "Bedrock")
    return blocks


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
    blocks = _text_blocks(text_of(message.get("content")))
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        tool_input = tool_call_input(function, f"{where}.tool_calls[{k}].function.arguments", "Bedrock")
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
            raise unsupported_role(role, where, "Bedrock")
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
        trim_prefill(turns)
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
    """The Converse toolChoice, None when not set; "none" is returned as {"none": {}}."""
    kind = tool_choice_kind(choice, "Bedrock")
    if kind is None:
        return None
    return {kind[0]: {}} if kind[1] is None else {"tool": {"name": kind[1]}}


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    found = json_tool_schema(response_format, "Bedrock")
    if found is None:
        return None
    return {"toolSpec": {"name": JSON_TOOL, "description": found[0], "inputSchema": {"json": found[1]}}}


def _max_tokens(body: dict[str, Any], model: str, config: ProviderConfig) -> int | None:
    requested = requested_max_tokens(body)
    return config.max_tokens_by_model.get(model) if requested is None else requested


def _reasoning_fields(effort: Any, model: str, config: ProviderConfig) -> tuple[dict[str, Any], int] | None:
    """(additionalModelRequestFields, thinking budget added to maxTokens) for `reasoning_effort`."""
    if effort in (None, "none", "minimal"):
        return None
    budget = THINKING_BUDGETS.get(effort)
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
        for name in UNSUPPORTED_PARAMS:
            if name in body and asks_for(name, body[name]):
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


finish_reason = finish_reasons(_FINISH)


def from_converse_usage(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return hub_usage(count("inputTokens"), count("outputTokens"), count("cacheReadInputTokens"),
                     count("cacheWriteInputTokens"))


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
                texts = [tool_arguments(use.get("input"))]  # the JSON answer replaces any preamble
                json_only = True
            else:
                tool_calls.append({"id": use.get("toolUseId"), "type": "function", "function": {
                    "name": use.get("name"), "arguments": tool_arguments(use.get("input"))}})
    return chat_completion(completion_id(request_id), model, texts, reasoning, tool_calls,
                           finish_reason(resp.get("stopReason"), json_only and not tool_calls),
                           from_converse_usage(resp.get("usage")))


class ConverseStreamConverter(ChunkBuilder):
    """ConverseStream events -> `chat.completion.chunk` dicts, one stream's state.

    `convert(event_type, payload)` returns the chunks of one event (possibly none) and raises
    `GatewayError` for an exception event. `done` is set by the `metadata` event, the last one;
    `stopped` by `messageStop` (a stream ending right after it is complete, without usage).
    """

    def __init__(self, provider: str, model: str, request_id: str | None, json_tool: bool = False) -> None:
        super().__init__(provider, completion_id(request_id), model, json_tool)
        self.done = False
        self.stopped = False
        self._started = False

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
            return [self._chunk({}, finish_reason(payload.get("stopReason"), self._json_only()))]
        if event_type == "metadata":
            self.done = True
            return [self._usage_chunk(from_converse_usage(payload.get("usage")))]
        return []  # contentBlockStop, and event types added later

    def _block_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        start = payload.get("start") or {}
        index = payload.get("contentBlockIndex")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict) or not isinstance(index, int):
            return []
        chunk = self._tool_start(index, use.get("toolUseId"), use.get("name"))
        return [] if chunk is None else [chunk]

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
