"""The hub side of the translators to non-OpenAI chat APIs (`anthropic_convert`, `bedrock_convert`).

Both read an OpenAI chat request and build an OpenAI chat response the same way; what they share
lives here, with no I/O, parameterised only by what truly differs (the provider's name in messages,
the upstream's key names, its stop-reason table). Each translator keeps its own wire shapes.

- Request: the OpenAI parameters neither upstream has (`UNSUPPORTED_PARAMS`, `asks_for`,
  `unsupported_parameter`; the roles and content parts they cannot take, `unsupported_role`,
  `unsupported_part`), base64 data URLs (`data_url`, `file_data`), the text of a content list
  (`text_of`), a replayed tool call's arguments as a JSON object (`tool_call_input`), `tool_choice`
  in the vocabulary both upstreams use (`tool_choice_kind`: auto / none / any / tool + name),
  `response_format` as the forced `json_response` tool's description and schema
  (`json_tool_schema`, `uses_json_tool`), the client's `max_tokens` (`requested_max_tokens`), the
  `reasoning_effort` budgets, the prefill rule (`trim_prefill`).
- Response: stop reason -> finish_reason (`finish_reasons`), token counts -> OpenAI usage
  (`hub_usage`), tool input -> arguments text (`tool_arguments`), the `chat.completion`
  (`chat_completion`), and a stream's chunk builders (`ChunkBuilder`).
"""

from __future__ import annotations

import binascii
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..errors import GatewayError, bad_request

__all__ = [
    "JSON_TOOL",
    "THINKING_BUDGETS",
    "UNSUPPORTED_PARAMS",
    "ChunkBuilder",
    "asks_for",
    "chat_completion",
    "data_url",
    "file_data",
    "finish_reasons",
    "hub_usage",
    "json_tool_schema",
    "requested_max_tokens",
    "text_of",
    "tool_arguments",
    "tool_call_input",
    "tool_choice_kind",
    "trim_prefill",
    "unsupported_parameter",
    "unsupported_part",
    "unsupported_role",
    "uses_json_tool",
]

JSON_TOOL = "json_response"

# OpenAI parameters neither Anthropic nor Converse has: a 400 when they ask for something.
UNSUPPORTED_PARAMS = ("n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed",
                      "logit_bias", "functions", "function_call")
# reasoning_effort -> the extended-thinking token budget (Claude, on either API).
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(.*)$", re.DOTALL)


# ---------------------------------------------------------------------------------------------
# request


def asks_for(name: str, value: Any) -> bool:
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


def unsupported_parameter(name: str, provider: str, api: str) -> GatewayError:
    """The 400 for a parameter provider `provider` (speaking `api`) cannot honour."""
    return bad_request(f"Parameter '{name}' is not supported by provider `{provider}` ({api}). Remove it, or set "
                       "`drop_unsupported: true` on the provider to drop it silently.",
                       param=name, code="unsupported_parameter")


def unsupported_role(role: Any, where: str, provider: str) -> GatewayError:
    """The 400 for a message role the `provider` provider has no turn for (`function`, unknown ones)."""
    return bad_request(f"Messages with role '{role}' are not supported by the {provider} provider; use 'tool' "
                       "messages.", param=f"{where}.role", code="unsupported_parameter")


def unsupported_part(ptype: Any, where: str, provider: str) -> GatewayError:
    """The 400 for a content part type the `provider` provider cannot send (audio, ...)."""
    return bad_request(f"Content part type '{ptype}' in '{where}' is not supported by the {provider} provider.",
                       param=f"{where}.type", code="unsupported_content")


def data_url(url: str, where: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:<media type>;base64,<data>` URL; a 400 naming `where` else."""
    match = _DATA_URL.match(url)
    if match is None:
        raise bad_request(f"Invalid data URL in '{where}': expected data:<media type>;base64,<data>.", param=where,
                          code="invalid_value")
    media_type, data = match.group(1).lower(), match.group(2).strip()
    try:
        binascii.a2b_base64(data[:64])  # a cheap sanity check; the upstream decodes the rest
    except (binascii.Error, ValueError) as exc:  # ValueError: a character outside ASCII
        raise bad_request(f"Invalid base64 data in '{where}'.", param=where, code="invalid_value") from exc
    return media_type, data


def file_data(part: dict[str, Any], where: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `file` part whose `file.file_data` is a data URL, else None."""
    file = part.get("file")
    url = file.get("file_data") if isinstance(file, dict) else None
    if isinstance(url, str) and url.startswith("data:"):
        return data_url(url, f"{where}.file.file_data")
    return None


def text_of(content: Any) -> str:
    """The text of a message's content: the string, or its text and refusal parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") in ("text", "refusal") and isinstance(p.get("text"),
                                                                                                   str))
    return ""


def tool_call_input(function: dict[str, Any], param: str, upstream: str) -> dict[str, Any]:
    """A replayed tool call's `arguments` as the JSON object both upstreams need (`param` names them)."""
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise bad_request(f"Invalid '{param}': {upstream} needs the arguments of a tool call to be a JSON object.",
                          param=param, code="invalid_value")
    return tool_input


def tool_choice_kind(choice: Any, provider: str) -> tuple[str, str | None] | None:
    """`tool_choice` as (auto | none | any | tool, the named tool), None when not set."""
    if choice is None:
        return None
    if choice == "auto":
        return ("auto", None)
    if choice == "none":
        return ("none", None)
    if choice == "required":
        return ("any", None)
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return ("tool", name)
    raise bad_request(f"Invalid 'tool_choice' for the {provider} provider: expected 'auto', 'none', 'required' or "
                      "{'type': 'function', 'function': {'name': ...}}.", param="tool_choice", code="invalid_value")


def uses_json_tool(body: dict[str, Any]) -> bool:
    """Whether the request's response_format is served by the forced `json_response` tool."""
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object")


def json_tool_schema(response_format: Any, provider: str) -> tuple[str, dict[str, Any]] | None:
    """(description, input schema) of the forced `json_response` tool for `response_format`, or None."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "Give the final answer as a JSON object.", {"type": "object"}
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise bad_request("Missing required parameter: 'response_format.json_schema.schema'.",
                          param="response_format.json_schema.schema", code="missing_required_parameter")
    if schema.get("type") != "object":
        raise bad_request(f"The {provider} provider needs a JSON schema whose root is an object.",
                          param="response_format.json_schema.schema", code="invalid_value")
    description = "Give the final answer as JSON"
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        description += f" ({spec['name']}"
        if isinstance(spec.get("description"), str):
            description += f": {spec['description']}"
        description += ")"
    return description + ".", schema


def requested_max_tokens(body: dict[str, Any]) -> int | None:
    """The client's `max_completion_tokens`, else its `max_tokens`, else None; below 1 is a 400."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise bad_request(f"Invalid '{name}': must be at least 1.", param=name, code="invalid_value")
            return value
    return None


def trim_prefill(turns: list[dict[str, Any]]) -> None:
    """Strips the trailing whitespace a prefill (the last turn, an assistant one ending in a text
    block) must not end with; a block left empty is dropped, and the turn with it if it empties."""
    content = turns[-1]["content"]
    text = content[-1]["text"].rstrip()
    if text:
        content[-1]["text"] = text
    else:
        content.pop()
        if not content:
            turns.pop()


# ---------------------------------------------------------------------------------------------
# response


def finish_reasons(table: Mapping[str, str]) -> Callable[[Any, bool], str]:
    """The finish_reason function for an upstream's stop-reason `table` (unknown -> stop; with
    `json_only`, the forced JSON tool's tool_use is a plain stop)."""
    get = table.get

    def finish_reason(stop_reason: Any, json_only: bool = False) -> str:
        if stop_reason == "tool_use" and json_only:
            return "stop"
        return get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"

    return finish_reason


def hub_usage(uncached: int, completion: int, read: int, write: int) -> dict[str, Any]:
    """OpenAI usage: `prompt_tokens` counts all input, cached included, as OpenAI's does."""
    prompt = uncached + read + write
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write}}


def tool_arguments(tool_input: Any) -> str:
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()


def chat_completion(completion_id: str, model: str, texts: list[str], reasoning: list[str],
                    tool_calls: list[dict[str, Any]], finish_reason: str, usage: dict[str, Any]) -> dict[str, Any]:
    """The `chat.completion` of one answer: its text, reasoning and tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None,
                               "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


class ChunkBuilder:
    """The `chat.completion.chunk`s of one stream, and its tool calls' numbering.

    A stream converter subclasses it: `_tool_index` maps the upstream's block index to the OpenAI
    tool call index (0, 1, ...), `_json_blocks` holds the blocks of the forced JSON tool (their
    input is streamed as `content`).
    """

    def __init__(self, provider: str, completion_id: str, model: str, json_tool: bool) -> None:
        self.provider = provider
        self.id = completion_id
        self.model = model
        self.json_tool = json_tool
        self.created = int(time.time())
        self._tool_index: dict[int, int] = {}
        self._json_blocks: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}

    def _usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage}

    def _json_only(self) -> bool:
        """Whether the answer was the forced JSON tool's call alone (its finish is then `stop`)."""
        return bool(self._json_blocks) and not self._tool_index

    def _tool_start(self, index: int, call_id: Any, name: Any) -> dict[str, Any] | None:
        """The first chunk of a tool call starting at upstream block `index` (None for the JSON tool)."""
        if self.json_tool and name == JSON_TOOL:
            self._json_blocks.add(index)
            return None
        tool_index = len(self._tool_index)
        self._tool_index[index] = tool_index
        return self._chunk({"tool_calls": [{"index": tool_index, "id": call_id, "type": "function",
                                            "function": {"name": name, "arguments": ""}}]})
