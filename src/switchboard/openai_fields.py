"""The OpenAI request parameters, by endpoint, with the JSON types each accepts.

Shared by the headends (type checks) and the OpenAI-compatible adapter (which fields are "spec"
and always forwarded). Ordered as in the official API reference.
"""

from __future__ import annotations

__all__ = ["CHAT_FIELDS", "CHAT_INTEGER_RANGES", "COMPLETION_FIELDS", "COMPLETION_INTEGER_RANGES", "EMBEDDING_FIELDS",
           "EMBEDDING_INTEGER_RANGES", "INT64_MAX", "INT64_MIN"]

# Every OpenAI chat parameter (ordered as in the API reference). `user` and `metadata` are looser
# than the spec because real clients send objects there (Open WebUI, Vapi).
CHAT_FIELDS: dict[str, str] = {
    "messages": "array",
    "model": "string",
    "audio": "object|null",
    "frequency_penalty": "number|null",
    "function_call": "string|object",
    "functions": "array",
    "logit_bias": "object|null",
    "logprobs": "boolean|null",
    "max_completion_tokens": "integer|null",
    "max_tokens": "integer|null",
    "metadata": "object|null",
    "modalities": "array|null",
    "moderation": "any",
    "n": "integer|null",
    "parallel_tool_calls": "boolean",
    "prediction": "object|null",
    "presence_penalty": "number|null",
    "prompt_cache_key": "string",
    "prompt_cache_options": "any",
    "prompt_cache_retention": "string|null",
    "reasoning_effort": "string|null",
    "response_format": "object",
    "safety_identifier": "string",
    "seed": "integer|null",
    "service_tier": "string|null",
    "stop": "string|array|null",
    "store": "boolean|null",
    "stream": "boolean|null",
    "stream_options": "object|null",
    "temperature": "number|null",
    "tool_choice": "string|object",
    "tools": "array",
    "top_logprobs": "integer|null",
    "top_p": "number|null",
    "user": "any",
    "verbosity": "string|null",
    "web_search_options": "object",
}

COMPLETION_FIELDS: dict[str, str] = {
    "model": "string",
    "prompt": "string|array|null",
    "best_of": "integer|null",
    "echo": "boolean|null",
    "frequency_penalty": "number|null",
    "logit_bias": "object|null",
    "logprobs": "integer|null",
    "max_tokens": "integer|null",
    "n": "integer|null",
    "presence_penalty": "number|null",
    "seed": "integer|null",
    "stop": "string|array|null",
    "stream": "boolean|null",
    "stream_options": "object|null",
    "suffix": "string|null",
    "temperature": "number|null",
    "top_p": "number|null",
    "user": "any",
}

EMBEDDING_FIELDS: dict[str, str] = {
    "input": "string|array",
    "model": "string",
    "encoding_format": "string",
    "dimensions": "integer",
    "user": "any",
}

# The ranges of the integer parameters (inclusive). An integer parameter without an entry may hold
# any 64-bit signed integer: no upstream takes more, and a value past 64 bits cannot even be
# encoded again. The bounds are the API reference's where it states one that holds for every
# OpenAI-compatible server (a token count is never negative, `n` is at most 128); an upstream's
# own tighter limits (its context size, its top_logprobs maximum) stay the upstream's to enforce.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

CHAT_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "max_completion_tokens": (1, INT64_MAX),
    "max_tokens": (1, INT64_MAX),
    "n": (1, 128),
    "top_logprobs": (0, INT64_MAX),
}

COMPLETION_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "best_of": (1, INT64_MAX),
    "logprobs": (0, INT64_MAX),
    "max_tokens": (0, INT64_MAX),  # 0 with `echo: true` scores a prompt without generating
    "n": (1, 128),
}

EMBEDDING_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "dimensions": (1, INT64_MAX),
}
