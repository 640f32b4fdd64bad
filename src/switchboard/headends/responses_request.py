"""Responses API request -> hub: validation of a `/v1/responses` body and its translation into an
OpenAI chat completions body, done once.

- `instructions` becomes a leading system message (a previous response's instructions are not
  carried over, as in OpenAI's API); the stored conversation of `previous_response_id` comes next,
  then this request's `input` (a string is one user message).
- Input items: `message` (user/system/developer/assistant; text, image and file parts; `refusal`),
  `function_call` / `custom_tool_call` (an assistant turn's tool calls; consecutive ones merge),
  `function_call_output` / `custom_tool_call_output` (tool messages; an output's images and files, as
  Codex's `view_image` returns, cannot be in a chat tool message: they follow the run of tool
  messages in a user message that names the call), `tool_search_call` /
  `tool_search_output` (a call of the bridged `tool_search` function and its result),
  `item_reference` (a stored item, by id: the headend looks it up). `reasoning` items are dropped
  (a bridged upstream cannot take them back), and so is any item type this bridge does not know:
  never a 400.
- Tools: `function` (flat here, nested in chat); `custom` (free-form input: offered as a function with
  one string argument `input`, turned back into `custom_tool_call.input`); `namespace` (its tools
  flattened as `<namespace>__<name>`, turned back into the name and its `namespace`); `tool_search`
  with `execution: "client"` (the client searches its deferred tools, as Codex does for its MCP
  servers): offered as a function `tool_search`, a call to it turned back into a `tool_search_call`;
  the tools a `tool_search_output` item loaded (in the stored conversation or this input) are offered
  from then on, like the request's own. Hosted tools (web search, file search, code interpreter, a
  server-executed tool search, ...) are dropped and named in the `x-switchboard-dropped-tools`
  response header, or rejected with a 400 (`responses.hosted_tools: reject`). `mcp` tools run
  server-side in the agents' tool loop (responses_mcp: the gateway's servers by `server_label`, a
  client's `server_url` only when `responses.allowed_mcp_urls` allows it).
- `max_output_tokens` -> `max_tokens`, `reasoning.effort` -> `reasoning_effort`, `text.format` ->
  `response_format`, `text.verbosity` -> `verbosity`; `temperature`, `top_p`, `user`,
  `parallel_tool_calls`, `prompt_cache_key`, `safety_identifier`, `service_tier` carry over.
- `background: true`, `conversation` and `prompt` (templates) cannot be served: 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import GatewayError, bad_request
from ..hub import ChatRequest
from .responses_mcp import McpToolSpec, parse_mcp_tool
from .validation import check_fields

__all__ = ["CUSTOM_INPUT", "TOOL_SEARCH", "ResponsesRequest", "ToolNames", "items_to_messages",
           "parse_responses_request", "to_hub"]

_TOP_FIELDS = {
    "model": "string", "input": "string|array|null", "instructions": "string|null", "tools": "array|null",
    "tool_choice": "string|object|null", "parallel_tool_calls": "boolean|null",
    "max_output_tokens": "integer|null", "temperature": "number|null", "top_p": "number|null",
    "reasoning": "object|null", "text": "object|null", "store": "boolean|null",
    "previous_response_id": "string|null", "include": "array|null", "metadata": "object|null",
    "user": "string|null", "prompt_cache_key": "string|null", "service_tier": "string|null",
    "truncation": "string|null", "stream": "boolean|null", "background": "boolean|null",
    "safety_identifier": "string|null",
}

# Hosted tools run by OpenAI's servers: a bridged upstream has no such tools.
_HOSTED = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                     "file_search", "code_interpreter", "image_generation", "computer_use_preview", "computer_use",
                     "computer", "local_shell", "shell", "apply_patch", "tool_search", "programmatic_tool_calling"})
_CARRIED = ("temperature", "top_p", "user", "parallel_tool_calls", "prompt_cache_key", "safety_identifier",
            "service_tier")
_NAMESPACE_SEP = "__"
# The one argument a custom (free-form) tool takes when bridged to a function.
CUSTOM_INPUT = "input"
# The function a client-executed tool search is offered as.
TOOL_SEARCH = "tool_search"
_TOOL_SEARCH_PARAMETERS = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}


@dataclass(slots=True)
class ToolNames:
    """Chat function name -> what it stands for in the Responses request (to turn calls back)."""

    custom: set[str] = field(default_factory=set)  # chat names of custom tools
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)  # chat name -> (namespace, name)
    tool_search: bool = False  # `tool_search` (client-executed) is offered: a call to it is a tool_search_call

    def chat_name(self, name: str, namespace: str | None) -> str:
        return f"{namespace}{_NAMESPACE_SEP}{name}" if namespace else name


@dataclass(slots=True)
class ResponsesRequest:
    """A validated Responses request: the raw body, and what the headend needs besides the hub body."""

    body: dict[str, Any]
    model: str
    stream: bool
    store: bool
    previous_response_id: str | None
    input_items: list[dict[str, Any]]  # this request's input, as item objects
    tools: ToolNames
    dropped_tools: list[str]
    mcp: list[McpToolSpec] = field(default_factory=list)  # `mcp` tools, run server-side (responses_mcp)


def _invalid(param: str, message: str) -> GatewayError:
    return bad_request(f"{param}: {message}", param=param, code="invalid_value")


def _input_items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    items: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"input[{i}]", "Input should be an object")
        if "type" not in item and "role" in item:
            item = {"type": "message", **item}
        items.append(item)
    return items


def parse_responses_request(body: dict[str, Any], hosted_tools: str = "drop",
                            mcp_servers: Mapping[str, str | None] | None = None,
                            allowed_mcp_urls: list[str] | None = None) -> ResponsesRequest:
    """`mcp_servers`: the gateway's MCP servers (name -> URL, None for stdio), which `mcp` tools may name;
    `allowed_mcp_urls`: the URLs of other MCP servers they may name (`responses.allowed_mcp_urls`)."""
    check_fields(body, _TOP_FIELDS)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required", param="model", code="missing_required_parameter")
    if body.get("background"):
        raise bad_request("`background: true` is not supported by this gateway; send the request without it.",
                          param="background", code="unsupported_parameter")
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            raise bad_request(f"`{name}` is not supported by this gateway; send the conversation as `input` "
                              "(or use `previous_response_id`).", param=name, code="unsupported_parameter")
    names, dropped = _check_tools(body.get("tools") or [], hosted_tools)
    mcp = [parse_mcp_tool(tool, f"tools[{i}]", mcp_servers or {}, allowed_mcp_urls or [])
           for i, tool in enumerate(body.get("tools") or ()) if tool.get("type") == "mcp"]
    store = body.get("store")
    return ResponsesRequest(body=body, model=model, stream=bool(body.get("stream")), store=store is not False,
                            previous_response_id=body.get("previous_response_id"),
                            input_items=_input_items(body.get("input")), tools=names, dropped_tools=dropped, mcp=mcp)


def _is_client_tool_search(tool: dict[str, Any]) -> bool:
    return tool.get("type") == "tool_search" and tool.get("execution") == "client"


def _check_tools(tools: list[Any], hosted_tools: str, names: ToolNames | None = None,
                 where: str = "tools") -> tuple[ToolNames, list[str]]:
    names = ToolNames() if names is None else names
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        at = f"{where}[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _invalid(at, "a tool is an object with a `type`")
        kind = tool["type"]
        if kind == "custom":
            names.custom.add(_tool_name(tool, at))
        elif kind == "namespace":
            namespace = _tool_name(tool, at)
            for j, inner in enumerate(tool.get("tools") or ()):
                if not isinstance(inner, dict):
                    raise _invalid(f"{at}.tools[{j}]", "a tool is an object")
                inner_name = _tool_name(inner, f"{at}.tools[{j}]")
                chat = names.chat_name(inner_name, namespace)
                names.namespaces[chat] = (namespace, inner_name)
                if inner.get("type") == "custom":
                    names.custom.add(chat)
        elif kind == "mcp":
            continue  # checked by responses_mcp.parse_mcp_tool, run by the tool loop
        elif _is_client_tool_search(tool):
            names.tool_search = True
        elif kind != "function":
            if hosted_tools == "reject":
                raise bad_request(f"{at}: the hosted tool `{kind}` cannot run on this model's upstream.",
                                  param=at, code="unsupported_tool")
            dropped.append(kind)
        else:
            _tool_name(tool, at)
    return names, dropped


def _tool_name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{where}.name: Field required", param=f"{where}.name", code="missing_required_parameter")
    return name


def _chat_tool(name: str, tool: dict[str, Any], custom: bool) -> dict[str, Any]:
    description = tool.get("description") or ""
    if custom:
        fmt = tool.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "grammar":
            description += (f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n"
                            f"{fmt.get('definition', '')}")
        parameters: dict[str, Any] = {"type": "object", "properties": {CUSTOM_INPUT: {
            "type": "string", "description": "The tool's raw input (free-form text)."}}, "required": [CUSTOM_INPUT],
            "additionalProperties": False}
    else:
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    if tool.get("strict") is not None and not custom:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _chat_tools(tools: list[dict[str, Any]], names: ToolNames) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        kind = tool["type"]
        if kind in ("function", "custom"):
            out.append(_chat_tool(tool["name"], tool, kind == "custom"))
        elif kind == "namespace":
            for inner in tool.get("tools") or ():
                chat = names.chat_name(inner["name"], tool["name"])
                out.append(_chat_tool(chat, inner, inner.get("type") == "custom"))
        elif _is_client_tool_search(tool):
            out.append(_chat_tool(TOOL_SEARCH, {"description": tool.get("description") or (
                "Search for tools that are not loaded yet; the ones found can be called afterwards."),
                "parameters": tool.get("parameters") or _TOOL_SEARCH_PARAMETERS}, custom=False))
    return out


def _loaded_tools(items: list[dict[str, Any]], known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools that `tool_search_output` items (a client's tool search results) loaded."""
    loaded: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") == "item_reference":
            item = known.get(str(item.get("id"))) or item
        if item.get("type") == "tool_search_output" and isinstance(item.get("tools"), list):
            loaded.extend(item["tools"])
    return loaded


def _tool_choice(choice: Any, names: ToolNames) -> Any:
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else "auto"
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            return {"type": "function", "function": {"name": names.chat_name(choice["name"], choice.get("namespace"))}}
        if kind == "allowed_tools":
            return "required" if choice.get("mode") == "required" else "auto"
    return "auto"  # a hosted tool's choice: that tool is not offered here


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        if fmt.get("description"):
            schema["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def _text_of(content: Any) -> str:
    """The text of a string or of a list of text-bearing parts (output_text, input_text, refusal...)."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content or ():
        if isinstance(part, dict):
            text = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts)


def _user_parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", "Input should be a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _invalid(f"{where}.content[{j}]", "a content part is an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "input_image":
            url = part.get("image_url") or part.get("file_id")
            if not isinstance(url, str):
                raise _invalid(f"{where}.content[{j}].image_url", "an input_image needs `image_url`")
            image: dict[str, Any] = {"url": url}
            if detail := _CHAT_DETAIL.get(str(part.get("detail"))):
                image["detail"] = detail
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file: dict[str, Any] = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
            if not file and part.get("file_url"):
                file = {"file_data": part["file_url"]}
            parts.append({"type": "file", "file": file})
        # other parts (audio...) cannot be bridged: skipped
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


# Responses image details -> chat's (auto, low, high): `original` (no downscaling) is chat's `high`.
_CHAT_DETAIL = {"auto": "auto", "low": "low", "high": "high", "original": "high"}
_MEDIA_NOTE = "(The tool's output that is not text follows in the next message.)"


def _output_media(output: Any, where: str) -> list[dict[str, Any]]:
    """The images and files of a tool output given as content parts, as chat parts."""
    if not isinstance(output, list):
        return []
    media = [part for part in output if isinstance(part, dict) and part.get("type") in ("input_image", "input_file")]
    parts = _user_parts(media, f"{where}.output") if media else []
    return parts if isinstance(parts, list) else []


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _text_of(output)
    return orjson.dumps(output).decode()


def _search_result(tools: Any) -> str:
    """A tool search's result as the model reads it: the tools it loaded (now offered as functions)."""
    found: list[str] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            found += [f"{tool.get('name')}{_NAMESPACE_SEP}{inner.get('name')}" for inner in tool.get("tools") or ()
                      if isinstance(inner, dict)]
        elif tool.get("name"):
            found.append(str(tool["name"]))
    return "Loaded tools: " + ", ".join(found) if found else "No tools found."


def items_to_messages(items: list[dict[str, Any]], names: ToolNames,
                      known: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Responses items (stored or sent) as chat messages, tool calls merged into assistant turns."""
    messages: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []  # tool outputs' images and files, sent after the run of tool messages
    for i, item in enumerate(items):
        kind = item.get("type")
        if kind == "item_reference":
            ref = (known or {}).get(str(item.get("id")))
            if ref is None:
                continue
            item, kind = ref, ref.get("type")
        where = f"input[{i}]"
        if media and kind in ("message", "function_call", "custom_tool_call", "tool_search_call"):
            messages.append({"role": "user", "content": media})
            media = []
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                text = _text_of(item.get("content"))
                last = messages[-1] if messages else None
                if last is not None and last["role"] == "assistant" and last.get("content") is None and text:
                    last["content"] = text
                else:
                    messages.append({"role": "assistant", "content": text})
            elif role in ("user", "system", "developer"):
                messages.append({"role": role, "content": _user_parts(item.get("content"), where)})
            else:
                raise _invalid(f"{where}.role", "Input should be 'user', 'assistant', 'system' or 'developer'")
        elif kind in ("function_call", "custom_tool_call"):
            name = names.chat_name(str(item.get("name") or ""), item.get("namespace"))
            if kind == "custom_tool_call":
                arguments = orjson.dumps({CUSTOM_INPUT: item.get("input") or ""}).decode()
            else:
                arguments = given if isinstance(given := item.get("arguments"), str) else "{}"
            call = {"id": item.get("call_id") or item.get("id") or f"call_{i}", "type": "function",
                    "function": {"name": name, "arguments": arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # one assistant turn, several calls
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id") or ""
            text = _output_text(item.get("output"))
            if attached := _output_media(item.get("output"), where):
                media += [{"type": "text", "text": f"The output of tool call {call_id}:"}, *attached]
                text = f"{text}\n{_MEDIA_NOTE}" if text else _MEDIA_NOTE
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "tool_search_call":
            given = item.get("arguments")
            arguments = given if isinstance(given, str) else orjson.dumps(given or {}).decode()
            call = {"id": item.get("call_id") or item.get("id") or f"call_{i}", "type": "function",
                    "function": {"name": TOOL_SEARCH, "arguments": arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "tool_search_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id") or "",
                             "content": _search_result(item.get("tools"))})
        # reasoning and unknown item types: skipped
    if media:
        messages.append({"role": "user", "content": media})
    for message in messages:
        if message["role"] == "assistant" and message.get("content") == "" and message.get("tool_calls"):
            message["content"] = None
    return messages


def to_hub(request: ResponsesRequest, history: list[dict[str, Any]], known: dict[str, dict[str, Any]]
           ) -> ChatRequest:
    """The chat request for this Responses request, after `history` (the stored conversation's items)."""
    body = request.body
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages += items_to_messages(history, request.tools)
    messages += items_to_messages(request.input_items, request.tools, known)
    if not messages:
        raise bad_request("input: Field required (a string or a list of items)", param="input",
                          code="missing_required_parameter")
    chat: dict[str, Any] = {"model": request.model, "messages": messages}
    for name in _CARRIED:
        if body.get(name) is not None:
            chat[name] = body[name]
    tools = [t for t in body.get("tools") or ()
             if t.get("type") in ("function", "custom", "namespace") or _is_client_tool_search(t)]
    if request.tools.tool_search and (loaded := _loaded_tools([*history, *request.input_items], known)):
        _check_tools(loaded, "drop", request.tools, where="tool_search_output.tools")
        offered = {t.get("name") for t in tools}
        for tool in loaded:  # each tool once, however many searches loaded it
            if tool.get("type") in ("function", "custom", "namespace") and tool.get("name") not in offered:
                offered.add(tool.get("name"))
                tools.append(tool)
    if tools:
        chat["tools"] = _chat_tools(tools, request.tools)
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"], request.tools)
    else:
        chat.pop("parallel_tool_calls", None)
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    text = body.get("text")
    if isinstance(text, dict):
        if (fmt := _response_format(text)) is not None:
            chat["response_format"] = fmt
        if text.get("verbosity"):
            chat["verbosity"] = text["verbosity"]
    if request.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return ChatRequest(body=chat, model=request.model, stream=request.stream, include_usage=True)
