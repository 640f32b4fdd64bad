"""Type checks for the OpenAI request bodies: a wrong type is a 400 that names the field.

Only known fields are checked; unknown fields are accepted and carried along (lossless
pass-through). The field lists follow the official OpenAI API spec.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import bad_request
from ..openai_fields import CHAT_FIELDS, COMPLETION_FIELDS, EMBEDDING_FIELDS

__all__ = [
    "check_fields",
    "validate_chat",
    "validate_completion",
    "validate_embedding",
]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "any": (object,),
}


def _is(value: Any, kind: str) -> bool:
    if value is None:
        return kind == "null"
    if kind == "null":
        return False
    if isinstance(value, bool) and kind not in ("boolean", "any"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[kind])


@functools.lru_cache(maxsize=256)
def _kinds(kinds: str) -> tuple[tuple[type, ...], bool, bool, bool, bool]:
    """A spec like "integer|null", compiled once: (types, null ok, any, bool ok, integral float ok)."""
    names = kinds.split("|")
    types = tuple(t for k in names if k not in ("null", "any") for t in _JSON_TYPES[k])
    return types, "null" in names, "any" in names, "boolean" in names, "integer" in names


def _fits(value: Any, kinds: str) -> bool:
    types, null_ok, any_ok, bool_ok, integral_ok = _kinds(kinds)
    if value is None:
        return null_ok
    if any_ok:
        return True
    if value.__class__ is bool:
        return bool_ok
    if isinstance(value, types):
        return True
    return integral_ok and isinstance(value, float) and value.is_integer()


_NONE_TYPE = type(None)
_EXACT_CLASSES: dict[str, tuple[type, ...]] = {
    "null": (_NONE_TYPE,), "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "object": (dict,), "array": (list,),
}
# id(spec) -> (spec, {field: classes a value may have exactly}).
_COMPILED: dict[int, tuple[dict[str, str], dict[str, frozenset[type]]]] = {}


def _exact_classes(spec: dict[str, str]) -> dict[str, frozenset[type]]:
    """For each field of `spec`, the classes that pass without further thought (what orjson makes);
    anything else (an integral float for an integer, a subclass) goes to `_fits`. Specs are module
    constants, compiled on first use; the entry keeps the spec alive, so its id cannot be reused."""
    entry = _COMPILED.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    if len(_COMPILED) >= 128:
        _COMPILED.clear()
    compiled = {name: frozenset(c for k in kinds.split("|") for c in _EXACT_CLASSES.get(k, ()))
                for name, kinds in spec.items()}  # "any" adds no class: such a field always goes to _fits
    _COMPILED[id(spec)] = (spec, compiled)
    return compiled


def _well_typed(body: dict[str, Any], spec: dict[str, str]) -> bool:
    """The fast check of `check_fields`, without building any error text."""
    # The body has a few fields, the spec dozens: walk the body.
    exact = _exact_classes(spec)
    for name, value in body.items():
        classes = exact.get(name)
        if classes is not None and value.__class__ not in classes and not _fits(value, spec[name]):
            return False
    return True


def check_fields(body: dict[str, Any], spec: dict[str, str], prefix: str = "") -> None:
    """`spec` maps a field to allowed JSON types, e.g. "number|null"."""
    if _well_typed(body, spec):
        return
    # On a failure, report the first bad field in spec order.
    for name, kinds in spec.items():
        if name not in body:
            continue
        value = body[name]
        if not any(_is(value, k) for k in kinds.split("|")):
            want = " or ".join(kinds.split("|"))
            raise bad_request(f"Invalid type for '{prefix}{name}': expected {want}, got {_json_type(value)}.",
                              param=f"{prefix}{name}", code="invalid_type")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_PLAIN_ROLES = frozenset(_ROLES) - {"tool"}  # the roles whose messages need no checks beyond their fields
_MESSAGE_FIELDS = {"role": "string", "content": "string|array|null", "name": "string", "tool_call_id": "string",
                   "tool_calls": "array|null", "function_call": "object|null", "refusal": "string|null"}


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise bad_request("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad_request("Invalid type for 'model': expected a non-empty string.", param="model", code="invalid_type")
    return model


def _check_stop(stop: Any, param: str = "stop") -> None:
    if isinstance(stop, list) and not all(isinstance(s, str) for s in stop):
        raise bad_request(f"Invalid type for '{param}': expected a string or an array of strings.", param=param,
                          code="invalid_type")


def _check_stream_options(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options and not isinstance(options["include_usage"], bool):
        raise bad_request("Invalid type for 'stream_options.include_usage': expected boolean.",
                          param="stream_options.include_usage", code="invalid_type")


def _check_n(body: dict[str, Any]) -> None:
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n < 1:
        raise bad_request("Invalid value for 'n': must be at least 1.", param="n", code="invalid_value")


def validate_chat(body: dict[str, Any]) -> str:
    """Check a chat completions body; returns the requested model name."""
    model = _require_model(body)
    if "messages" not in body:
        raise bad_request("Missing required parameter: 'messages'.", param="messages",
                          code="missing_required_parameter")
    check_fields(body, CHAT_FIELDS)
    messages = body["messages"]
    if not messages:
        raise bad_request("Invalid 'messages': empty array. Expected an array with minimum length 1.",
                          param="messages", code="empty_array")
    for i, message in enumerate(messages):
        # The common case, a dict with a role among the known ones, well-typed fields and content,
        # is settled without building the error texts (`where`) the checks below need.
        if message.__class__ is dict and message.get("role") in _PLAIN_ROLES \
                and message.get("content").__class__ is str and "tool_calls" not in message \
                and _well_typed(message, _MESSAGE_FIELDS):
            continue
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
        role = message.get("role")
        if role is None:
            raise bad_request(f"Missing required parameter: '{where}.role'.", param=f"{where}.role",
                              code="missing_required_parameter")
        check_fields(message, _MESSAGE_FIELDS, where + ".")
        if role not in _ROLES:
            raise bad_request(f"Invalid value: '{role}'. Supported values are: {', '.join(repr(r) for r in _ROLES)}.",
                              param=f"{where}.role", code="invalid_value")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise bad_request(f"Invalid '{where}.content[{j}]': each content part must be an object with a "
                                      "string 'type'.", param=f"{where}.content[{j}]", code="invalid_type")
        elif content is None and role not in ("assistant",) and "content" in message:
            raise bad_request(f"Invalid value for '{where}.content': null is only allowed for assistant messages.",
                              param=f"{where}.content", code="invalid_value")
        elif "content" not in message and role != "assistant":
            raise bad_request(f"Missing required parameter: '{where}.content'.", param=f"{where}.content",
                              code="missing_required_parameter")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise bad_request(f"Missing required parameter: '{where}.tool_call_id'.", param=f"{where}.tool_call_id",
                              code="missing_required_parameter")
        for k, call in enumerate(message.get("tool_calls") or ()):
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                raise bad_request(f"Invalid '{where}.tool_calls[{k}]': expected an object with 'function'.",
                                  param=f"{where}.tool_calls[{k}]", code="invalid_type")
    for i, tool in enumerate(body.get("tools") or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad_request(f"Invalid '{where}': expected an object with a string 'type'.", param=where,
                              code="invalid_type")
        if tool["type"] == "function":
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise bad_request(f"Missing required parameter: '{where}.function.name'.",
                                  param=f"{where}.function.name", code="missing_required_parameter")
    _check_stop(body.get("stop"))
    _check_stream_options(body)
    _check_n(body)
    rf = body.get("response_format")
    if isinstance(rf, dict) and not isinstance(rf.get("type"), str):
        raise bad_request("Missing required parameter: 'response_format.type'.", param="response_format.type",
                          code="missing_required_parameter")
    return model


def validate_completion(body: dict[str, Any]) -> str:
    model = _require_model(body)
    if "prompt" not in body:
        raise bad_request("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    check_fields(body, COMPLETION_FIELDS)
    prompt = body["prompt"]
    if isinstance(prompt, list) and prompt:
        first = prompt[0]
        ok = (
            all(isinstance(p, str) for p in prompt)
            or all(isinstance(p, int) and not isinstance(p, bool) for p in prompt)
            or all(isinstance(p, list) and all(_is(t, "integer") for t in p) for p in prompt)
        )
        if not ok:
            raise bad_request("Invalid type for 'prompt': expected a string, an array of strings, an array of tokens "
                              f"or an array of token arrays (got an array starting with {_json_type(first)}).",
                              param="prompt", code="invalid_type")
    _check_stop(body.get("stop"))
    _check_stream_options(body)
    _check_n(body)
    return model


def validate_embedding(body: dict[str, Any]) -> str:
    model = _require_model(body)
    if "input" not in body:
        raise bad_request("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    check_fields(body, EMBEDDING_FIELDS)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise bad_request(f"Invalid value for 'encoding_format': '{fmt}'. Supported values are: 'float' and 'base64'.",
                          param="encoding_format", code="invalid_value")
    return model
