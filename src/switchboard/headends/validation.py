"""Type checks for the OpenAI request bodies: a wrong type is a 400 that names the field.

Only known fields are checked; unknown fields are accepted and carried along (lossless
pass-through). The field lists follow the official OpenAI API spec.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import bad_request
from ..openai_fields import (
    CHAT_FIELDS,
    CHAT_INTEGER_RANGES,
    COMPLETION_FIELDS,
    COMPLETION_INTEGER_RANGES,
    EMBEDDING_FIELDS,
    EMBEDDING_INTEGER_RANGES,
    INT64_MAX,
    INT64_MIN,
)

__all__ = [
    "FieldSpec",
    "check_fields",
    "check_spec",
    "model_name_problem",
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
        return kind in ("null", "any")
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
    if any_ok:
        return True
    if value is None:
        return null_ok
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
_NO_RANGES: dict[str, tuple[int, int]] = {}
_INT64 = (INT64_MIN, INT64_MAX)


class FieldSpec:
    """A field spec compiled once, at import: `kinds` maps a field to its allowed JSON types (e.g.
    "number|null"), `ranges` bounds integer fields (those without an entry hold any 64-bit signed
    integer). For each field, `exact` holds the classes that pass without further thought (what
    orjson makes); an integer field's ints are not among them: they take the slow branch, which
    also checks the range."""

    __slots__ = ("exact", "kinds", "ranges")

    def __init__(self, kinds: dict[str, str], ranges: dict[str, tuple[int, int]] = _NO_RANGES) -> None:
        self.kinds = kinds
        self.ranges = {name: ranges.get(name, _INT64) for name, spec in kinds.items() if "integer" in spec.split("|")}
        # "any" adds no class: such a field always goes to the slow branch
        self.exact = {name: frozenset(c for k in spec.split("|") for c in _EXACT_CLASSES.get(k, ())
                                      if not (c is int and name in self.ranges))
                      for name, spec in kinds.items()}


# id(kinds) -> its compiled form, for callers of `check_fields` with a plain spec (the entry keeps
# the spec alive, so its id cannot be reused).
_COMPILED: dict[int, FieldSpec] = {}


def _compiled(kinds: dict[str, str]) -> FieldSpec:
    entry = _COMPILED.get(id(kinds))
    if entry is not None and entry.kinds is kinds:
        return entry
    if len(_COMPILED) >= 128:
        _COMPILED.clear()
    entry = _COMPILED[id(kinds)] = FieldSpec(kinds)
    return entry


def _well_typed(body: dict[str, Any], spec: FieldSpec) -> bool:
    """The fast check of `check_spec`, without building any error text. False also for an
    integral float in an integer field, which `check_spec` turns into an int."""
    # The body has a few fields, the spec dozens: walk the body.
    exact = spec.exact
    for name, value in body.items():
        classes = exact.get(name)
        if classes is None or value.__class__ in classes:
            continue
        bounds = spec.ranges.get(name)
        if bounds is None:
            if not _fits(value, spec.kinds[name]):
                return False
        elif value.__class__ is not int or not bounds[0] <= value <= bounds[1]:
            return False  # a float (integral or not), a bool, an int out of range, a wrong type
    return True


def check_fields(body: dict[str, Any], kinds: dict[str, str], prefix: str = "") -> None:
    """`check_spec` with a plain spec (field -> allowed JSON types), compiled on first use."""
    check_spec(body, _compiled(kinds), prefix)


def check_spec(body: dict[str, Any], spec: FieldSpec, prefix: str = "") -> None:
    """A 400 naming the first field (in spec order) of a wrong type or out of its range. An
    integral float in an integer field (`2.0`, `1e3`) is accepted and becomes an int, so every
    upstream receives an integer."""
    if _well_typed(body, spec):
        return
    for name, kinds in spec.kinds.items():
        if name not in body:
            continue
        value = body[name]
        if not any(_is(value, k) for k in kinds.split("|")):
            want = " or ".join(kinds.split("|"))
            raise bad_request(f"Invalid type for '{prefix}{name}': expected {want}, got {_json_type(value)}.",
                              param=f"{prefix}{name}", code="invalid_type")
        bounds = spec.ranges.get(name)
        if bounds is None or value is None or value.__class__ is bool or not isinstance(value, int | float):
            continue
        if value < bounds[0]:
            raise bad_request(f"Invalid '{prefix}{name}': integer below minimum value. Expected a value >= "
                              f"{bounds[0]}, but got {_number(value)} instead.", param=f"{prefix}{name}",
                              code="integer_below_min_value")
        if value > bounds[1]:
            raise bad_request(f"Invalid '{prefix}{name}': integer above maximum value. Expected a value <= "
                              f"{bounds[1]}, but got {_number(value)} instead.", param=f"{prefix}{name}",
                              code="integer_above_max_value")
        if isinstance(value, float):
            body[name] = int(value)


def _number(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e30 else str(value)


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
_MESSAGE_SPEC = FieldSpec({"role": "string", "content": "string|array|null", "name": "string",
                           "tool_call_id": "string", "tool_calls": "array|null", "function_call": "object|null",
                           "refusal": "string|null"})
_CHAT_SPEC = FieldSpec(CHAT_FIELDS, CHAT_INTEGER_RANGES)
_COMPLETION_SPEC = FieldSpec(COMPLETION_FIELDS, COMPLETION_INTEGER_RANGES)
_EMBEDDING_SPEC = FieldSpec(EMBEDDING_FIELDS, EMBEDDING_INTEGER_RANGES)


def model_name_problem(model: str) -> str | None:
    """Why `model` cannot be a model name, or None. The name is echoed in a response header
    (x-switchboard-model), so it must be printable and fit in Latin-1: no CR/LF, no NUL."""
    if model.isascii() and model.isprintable():
        return None
    if not model.isprintable():
        return "a model name must not contain control or other non-printable characters"
    if max(model) > "\xff":
        return "a model name must be written in Latin-1 characters (it is echoed in a response header)"
    return None


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise bad_request("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad_request("Invalid type for 'model': expected a non-empty string.", param="model", code="invalid_type")
    if not (model.isascii() and model.isprintable()) and (problem := model_name_problem(model)) is not None:
        raise bad_request(f"Invalid 'model': {problem}.", param="model", code="invalid_value")
    return model


def _check_stop(stop: Any, param: str = "stop") -> None:
    if isinstance(stop, list) and not all(isinstance(s, str) for s in stop):
        raise bad_request(f"Invalid type for '{param}': expected a string or an array of strings.", param=param,
                          code="invalid_type")


def _check_logit_bias(biases: dict[str, Any]) -> None:
    """Each bias is a number from -100 to 100 (the API reference's range, which every server takes)."""
    for bias in biases.values():
        if bias.__class__ is bool or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            shown = "a boolean" if bias.__class__ is bool else _number(bias) if isinstance(bias, int | float) \
                else _json_type(bias)
            raise bad_request(f"Invalid 'logit_bias': each bias must be a number from -100 to 100, got {shown}.",
                              param="logit_bias", code="invalid_value")


def _check_stream_options(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options and not isinstance(options["include_usage"], bool):
        raise bad_request("Invalid type for 'stream_options.include_usage': expected boolean.",
                          param="stream_options.include_usage", code="invalid_type")


def _check_tool_choice(choice: dict[str, Any]) -> None:
    """An object `tool_choice` names its type, and a function choice names the function."""
    kind = choice.get("type")
    if not isinstance(kind, str):
        raise bad_request("Missing required parameter: 'tool_choice.type'.", param="tool_choice.type",
                          code="missing_required_parameter")
    if kind == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request("Missing required parameter: 'tool_choice.function.name'.",
                              param="tool_choice.function.name", code="missing_required_parameter")


def validate_chat(body: dict[str, Any]) -> str:
    """Check a chat completions body; returns the requested model name."""
    model = _require_model(body)
    if "messages" not in body:
        raise bad_request("Missing required parameter: 'messages'.", param="messages",
                          code="missing_required_parameter")
    check_spec(body, _CHAT_SPEC)
    messages = body["messages"]
    if not messages:
        raise bad_request("Invalid 'messages': empty array. Expected an array with minimum length 1.",
                          param="messages", code="empty_array")
    for i, message in enumerate(messages):
        # The common case, a dict with a role among the known ones, well-typed fields and content,
        # is settled without building the error texts (`where`) the checks below need.
        if message.__class__ is dict and (role := message.get("role")).__class__ is str and role in _PLAIN_ROLES \
                and message.get("content").__class__ is str and "tool_calls" not in message \
                and _well_typed(message, _MESSAGE_SPEC):
            continue
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
        role = message.get("role")
        if role is None:
            raise bad_request(f"Missing required parameter: '{where}.role'.", param=f"{where}.role",
                              code="missing_required_parameter")
        check_spec(message, _MESSAGE_SPEC, where + ".")
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
    if (choice := body.get("tool_choice")).__class__ is dict:
        _check_tool_choice(choice)
    _check_stop(body.get("stop"))
    _check_stream_options(body)
    if (biases := body.get("logit_bias")).__class__ is dict:
        _check_logit_bias(biases)
    rf = body.get("response_format")
    if isinstance(rf, dict) and not isinstance(rf.get("type"), str):
        raise bad_request("Missing required parameter: 'response_format.type'.", param="response_format.type",
                          code="missing_required_parameter")
    return model


def validate_completion(body: dict[str, Any]) -> str:
    model = _require_model(body)
    if "prompt" not in body:
        raise bad_request("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    check_spec(body, _COMPLETION_SPEC)
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
    if (biases := body.get("logit_bias")).__class__ is dict:
        _check_logit_bias(biases)
    return model


def validate_embedding(body: dict[str, Any]) -> str:
    model = _require_model(body)
    if "input" not in body:
        raise bad_request("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    check_spec(body, _EMBEDDING_SPEC)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise bad_request(f"Invalid value for 'encoding_format': '{fmt}'. Supported values are: 'float' and 'base64'.",
                          param="encoding_format", code="invalid_value")
    return model
